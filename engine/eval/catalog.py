"""Names, titles, scales and definitions of every metric an evaluation can compute.

Standard library only and free of any scoring code, so the window shows each metric's definition
where the user picks it without importing the scoring libraries (engine.eval.metrics imports torch for
multiple choice, which the GUI may not). engine.eval.metrics builds its registry from these texts.
"""

from __future__ import annotations

from typing import NamedTuple

PERPLEXITY = "perplexity"  # answer perplexity (the name older specs and evaluation folders use)
MC_ACCURACY = "mc_accuracy"
TOKEN_PERPLEXITY = "token_perplexity"
WORD_PERPLEXITY = "word_perplexity"
BYTE_PERPLEXITY = "byte_perplexity"
BITS_PER_BYTE = "bits_per_byte"
# Raw-text metrics of text datasets, scored as lm-evaluation-harness's loglikelihood_rolling.
TEXT_METRICS = (TOKEN_PERPLEXITY, WORD_PERPLEXITY, BYTE_PERPLEXITY, BITS_PER_BYTE)


class MetricText(NamedTuple):
    title: str
    unit: str  # "0-100", "0-1", "ratio" or "bits"
    definition: str
    better: str = "higher"


# Generation metrics, scored by engine.eval.metrics on the generated text.
GENERATION: dict[str, MetricText] = {
    'bleu': MetricText(
        'BLEU', '0-100',
        'Corpus BLEU computed by sacrebleu (13a tokenisation, up to 4-grams, brevity '
        'penalty): how many word n-grams of the outputs also appear in the references, '
        'pooled over the whole set. 0-100, higher is better. Standard for translation; it'
        ' rewards exact wording, so a correct paraphrase scores low. The per-row value is'
        ' sentence BLEU with smoothing.'),
    'chrf': MetricText(
        'chrF', '0-100',
        'Character n-gram F-score computed by sacrebleu (character 6-grams, recall '
        'weighted twice as much as precision), pooled over the whole set. 0-100, higher '
        'is better. More forgiving than BLEU of inflections and small spelling '
        'differences, and works for languages without spaces between words.'),
    'rouge1': MetricText(
        'ROUGE-1', '0-1',
        "ROUGE F-measure from Google's rouge-score package (Porter stemming): overlap of "
        'single words (unigrams), between each output and its reference (best reference '
        'when there are several), averaged over the set. 0-1, higher is better. Standard '
        'for summarisation. Its tokenizer keeps only ASCII letters and digits, so it is '
        'not meaningful for non-Latin scripts.'),
    'rouge2': MetricText(
        'ROUGE-2', '0-1',
        "ROUGE F-measure from Google's rouge-score package (Porter stemming): overlap of "
        'word pairs (bigrams), between each output and its reference (best reference when'
        ' there are several), averaged over the set. 0-1, higher is better. Standard for '
        'summarisation. Its tokenizer keeps only ASCII letters and digits, so it is not '
        'meaningful for non-Latin scripts.'),
    'rougeL': MetricText(
        'ROUGE-L', '0-1',
        "ROUGE F-measure from Google's rouge-score package (Porter stemming): the longest"
        ' common subsequence of words, so word order matters, between each output and its'
        ' reference (best reference when there are several), averaged over the set. 0-1, '
        'higher is better. Standard for summarisation. Its tokenizer keeps only ASCII '
        'letters and digits, so it is not meaningful for non-Latin scripts.'),
    'rougeLsum': MetricText(
        'ROUGE-Lsum', '0-1',
        "ROUGE F-measure from Google's rouge-score package (Porter stemming): the longest"
        ' common subsequence computed per sentence (one sentence per line) and combined '
        'over the summary, between each output and its reference (best reference when '
        'there are several), averaged over the set. 0-1, higher is better. Standard for '
        'summarisation. Its tokenizer keeps only ASCII letters and digits, so it is not '
        'meaningful for non-Latin scripts.'),
    'exact_match': MetricText(
        'Exact match', '0-1',
        'SQuAD exact match: 1 when the output equals a reference after lowercasing and '
        'removing punctuation, the articles a/an/the and extra spaces, else 0; averaged '
        'over the set. 0-1. The strictest measure for short factual answers.'),
    'token_f1': MetricText(
        'Token F1', '0-1',
        'SQuAD token F1: the output and the reference are normalised as for exact match, '
        'split into words, and compared as bags of words (harmonic mean of precision and '
        'recall); best reference per example, averaged over the set. 0-1. Gives partial '
        'credit to answers that are almost right.'),
    'accuracy': MetricText(
        'Accuracy (generated label)', '0-1',
        'Classification accuracy: 1 when the generated label equals the reference label '
        'ignoring case, extra spaces and surrounding punctuation ("Positive." = '
        '"positive"), else 0; averaged over the set. 0-1. Any extra words in the output '
        'count as wrong, so prompt the model to answer with the label only.'),
    'regex_match': MetricText(
        'Regex match', '0-1',
        '1 when the whole output (leading and trailing spaces ignored) matches your '
        'regular expression (Python syntax), else 0; averaged over the set. 0-1. Checks '
        "the output's format, e.g. a date or an ID; the reference is not used."),
    'json_field_match': MetricText(
        'JSON-field match', '0-1',
        'The first JSON object in the output is parsed and the chosen fields are compared'
        " with the reference's (all of the reference's fields when none are chosen); the "
        'score is the fraction of fields with equal values, 0 when no JSON object can be '
        'parsed; averaged over the set. 0-1. For structured extraction.'),
}

# Scored from log-likelihoods, without generation.
LIKELIHOOD: dict[str, MetricText] = {
    PERPLEXITY: MetricText(
        'Answer perplexity', 'ratio',
        'For prompt + answer rows (conversations, classification, preference): exp of the '
        'mean negative log-likelihood per token of the reference answer, given the prompt '
        'exactly as generation sees it (chat template applied); prompt tokens are not '
        'scored, and the mean is weighted by tokens over the set. Forward passes only, no '
        'generation. Lower is better: the model finds the expected answers less '
        'surprising. Depends on the tokenizer, so compare only models that share one. '
        '(On a text dataset this name asks for token perplexity.)',
        'lower'),
    TOKEN_PERPLEXITY: MetricText(
        'Token perplexity (text)', 'ratio',
        "For text datasets: exp of the total negative log-likelihood of the raw texts "
        "divided by their total number of tokens, scored as lm-evaluation-harness's "
        "loglikelihood_rolling does (no chat template, the first token conditioned on the "
        "BOS/end-of-text token, windows of the model's maximum length). Lower is better. "
        'Depends on the tokenizer, so compare only models that share one.',
        'lower'),
    WORD_PERPLEXITY: MetricText(
        'Word perplexity (text)', 'ratio',
        "For text datasets: exp of the total negative log-likelihood of the raw texts "
        "(scored as token perplexity) divided by their total number of words (pieces "
        "between runs of whitespace, lm-eval's count); lm-eval's word_perplexity. Lower is "
        'better. Comparable across tokenizers on the same texts.',
        'lower'),
    BYTE_PERPLEXITY: MetricText(
        'Byte perplexity (text)', 'ratio',
        "For text datasets: exp of the total negative log-likelihood of the raw texts "
        "(scored as token perplexity) divided by their total number of UTF-8 bytes; "
        "lm-eval's byte_perplexity. Lower is better. Comparable across tokenizers and "
        'languages.',
        'lower'),
    BITS_PER_BYTE: MetricText(
        'Bits per byte (text)', 'bits',
        "For text datasets: the total negative log-likelihood of the raw texts (scored as "
        "token perplexity) in bits divided by their total number of UTF-8 bytes, i.e. "
        "log2 of byte perplexity; lm-eval's bits_per_byte. Lower is better. Comparable "
        'across tokenizers; the compression view of a language model.',
        'lower'),
    MC_ACCURACY: MetricText(
        'Accuracy (log-likelihood)', '0-1',
        'Classification accuracy the way lm-evaluation-harness scores multiple choice: '
        'each label is scored as a continuation of the prompt and the one with the '
        "highest log-likelihood is the model's answer; 1 when it is the reference label. "
        '0-1. Unlike generated-label accuracy it cannot be spoiled by extra words in the '
        'output.',
        'higher'),
}

ALL: dict[str, MetricText] = {**LIKELIHOOD, **GENERATION}


def known_metrics() -> tuple[str, ...]:
    return tuple(ALL)


def metric_info(name: str) -> dict[str, str]:
    """Title, direction ("higher"/"lower" is better), unit and definition of a metric.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name not in ALL:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(ALL)}")
    text = ALL[name]
    return {"title": text.title, "better": text.better, "unit": text.unit, "definition": text.definition}
