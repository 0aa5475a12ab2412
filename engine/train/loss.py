"""The SFT loss computed only where it is taken, in chunks: the output head never runs on prompt
or padding positions, and the [tokens x vocab] logits are never held in memory at once.

Why: with completion-only loss most positions of a chat row are prompt (system + user turns),
yet a plain forward projects every position through the output head -- for a 49k vocabulary that
is a fifth of a small model's FLOPs and the largest activation of the step. TRL's fused head
tiles the projection but, off Triton devices (the CPU), still scores every position.

:class:`AnswerOnlyCrossEntropy` takes the hidden states of the answer positions only and, chunk
by chunk, computes the logits in float32, the summed cross-entropy, and at once the gradient
with respect to the hidden states (and to the head's weight when it trains, as in a full
fine-tune). Backward only scales what forward kept: the memory held between the two passes is
one [answer tokens x hidden] tensor, not [tokens x vocab]. This is the shape of Liger's fused
linear cross-entropy, in plain PyTorch so that it serves every device.

:func:`install_answer_only_head` patches a causal LM's forward so that
``model(..., labels=..., answer_only_loss=True)`` returns :class:`AnswerOnlyOutput`; called
through every wrapper (peft, DDP) so gradient hooks still see the call. Without the keyword the
forward is the original one.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

import torch

# Rows of logits computed at once. The loss runs at the end of the forward pass, when every saved
# activation is held, so its chunk adds to the step's peak: about three [chunk x vocabulary]
# float32 tensors at a time (logits, log-sum-exp's working copy, probabilities), 3 x 128 x 49k x 4
# bytes = 75 MB on a 49k vocabulary, where 1024 rows took up to 600 MB. 128 rows are still a
# large matrix multiply; a step's few chunks add no measurable Python overhead.
DEFAULT_CHUNK = 128
IGNORE = -100


@dataclass
class AnswerOnlyOutput:
    """What the patched forward returns: the loss, and the per-token figures TRL logs."""

    loss: torch.Tensor
    label_mask: torch.Tensor
    correct: torch.Tensor  # answer tokens whose top-1 prediction is the label (a count)
    entropy_sum: torch.Tensor


class AnswerOnlyCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``, chunked.

    Gradients are computed in forward (while each chunk's logits exist) and only scaled in
    backward, so nothing of size [N x vocab] outlives its chunk.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        needs_hidden_grad = ctx.needs_input_grad[0]
        needs_weight_grad = ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if needs_hidden_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if needs_weight_grad else None
        loss = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        entropy = hidden.new_zeros((), dtype=torch.float32)
        weight32 = weight.float()  # once, not per chunk: a bf16 head is a full copy each time
        for start in range(0, hidden.size(0), chunk):
            part, wanted = hidden[start:start + chunk], targets[start:start + chunk]
            logits = _head(part, weight32)
            log_norm = torch.logsumexp(logits, dim=-1)
            loss += (log_norm - logits.gather(1, wanted[:, None]).squeeze(1)).sum()
            correct += (logits.argmax(dim=-1) == wanted).sum()
            probs = torch.softmax(logits, dim=-1)
            entropy += (log_norm - torch.einsum("ij,ij->i", probs, logits)).sum()  # no [chunk x vocab] product
            if grad_hidden is None and grad_weight is None:
                continue
            probs[torch.arange(wanted.numel(), device=probs.device), wanted] -= 1.0  # d loss / d logits
            with torch.autocast(hidden.device.type, enabled=False):
                if grad_hidden is not None:
                    grad_hidden[start:start + chunk] = (probs @ weight32).to(hidden.dtype)
                if grad_weight is not None:
                    grad_weight += probs.t() @ part.float()
        ctx.save_for_backward(*(t for t in (grad_hidden, grad_weight) if t is not None))
        ctx.has_grads = (grad_hidden is not None, grad_weight is not None)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(correct, entropy)
        return loss, correct, entropy

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        saved = list(ctx.saved_tensors)
        has_hidden, has_weight = ctx.has_grads
        grad_hidden = grad_weight = None
        if has_hidden:
            stored = saved.pop(0)
            grad_hidden = stored * grad_loss.to(stored.dtype)
        if has_weight:
            grad_weight = (saved.pop(0) * grad_loss).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None


def _head(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """float32 logits of one chunk. Outside autocast: bf16 logits are off by ~0.1 at typical
    magnitudes, which moves the loss; the head runs on answer positions only, so fp32 is cheap."""
    with torch.autocast(hidden.device.type, enabled=False):
        return hidden.float() @ weight.float().t()


def chunked_answer_loss(hidden: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                     num_items: Any = None, chunk: int = DEFAULT_CHUNK) -> AnswerOnlyOutput:
    """The mean next-token loss over positions whose label is not -100.

    Args:
        hidden: the backbone's last hidden states, [batch, length, hidden].
        labels: [batch, length], -100 where no loss is taken (unshifted, as models take them).
        weight: the output head's weight, [vocab, hidden].
        num_items: the loss's denominator when the Trainer counts tokens across accumulation
            steps (``num_items_in_batch``); else the answer tokens of this batch.
        chunk: answer positions whose logits exist at once.
    """
    hidden, labels = hidden[:, :-1], labels[:, 1:].to(hidden.device)
    mask = labels != IGNORE
    total, correct, entropy = AnswerOnlyCrossEntropy.apply(hidden[mask], weight, labels[mask], chunk)
    denominator = mask.sum() if num_items is None else num_items
    loss = total / torch.as_tensor(denominator, device=total.device).clamp(min=1)
    return AnswerOnlyOutput(loss=loss, label_mask=mask, correct=correct, entropy_sum=entropy)


def supports_answer_only_head(model: Any) -> bool:
    """True for causal LMs whose logits are exactly ``lm_head(hidden)``: no soft-capping, logit
    scaling or bias, which the chunked loss does not apply, and an ordinary Linear head."""
    config = model.config.get_text_config()
    for scaling in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                    "logits_scaling"):
        if getattr(config, scaling, None) not in (None, 1.0):
            return False
    head = model.get_output_embeddings()
    return (type(head) is torch.nn.Linear and head.bias is None
            and hasattr(model, "base_model") and model.base_model is not model)


def install_answer_only_head(model: Any, chunk: int = DEFAULT_CHUNK) -> None:
    """Patches ``model.forward`` (a causal LM, before peft wraps it) to take ``answer_only_loss``.

    The backbone and head are looked up at each call: peft and accelerate replace modules after
    the patch.
    """
    original = model.forward

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, answer_only_loss: bool = False, labels: Any = None,
                num_items_in_batch: Any = None, **kwargs: Any) -> Any:
        if not answer_only_loss:
            if labels is not None:
                kwargs["labels"] = labels
            if num_items_in_batch is not None:
                kwargs["num_items_in_batch"] = num_items_in_batch
            return original(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        return chunked_answer_loss(hidden, labels, self.get_output_embeddings().weight, num_items_in_batch, chunk)

    model.forward = types.MethodType(forward, model)

