"""Options of the inference commands: generate, session, serve and batch.

Standard library only and light, so the CLI builds these parsers without importing the handlers.
Flags that mean a sampling parameter take that knob's help and limits from
:class:`engine.infer.params.SamplingParams`, with the command's own default.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.schema import knob, knob_from
from engine.infer.params import SamplingParams
from engine.runtime.options import device_knob

BASE_MODEL_HELP = "base model (as for train; default: the adapter's base, else the bundled model)"
ADAPTER_HELP = "a PEFT adapter folder or a run folder / run id"
GREEDY_HELP = "0 means greedy decoding"


@dataclass
class GenerateOptions:
    model: str | None = knob(None, BASE_MODEL_HELP)
    adapter: str = knob("", ADAPTER_HELP)
    prompt: str = knob("", "the user message", required=True)
    system: str | None = knob(None, "system prompt (default: the dataset's, if the adapter's run recorded "
                              "one, else none)")
    raw: bool = knob(False, "complete the prompt as plain text, no chat template")
    max_new_tokens: int = knob_from(SamplingParams, "max_new_tokens", default=128)
    temperature: float = knob_from(SamplingParams, "temperature", default=0.0, help=GREEDY_HELP)
    top_p: float = knob_from(SamplingParams, "top_p", default=1.0)
    seed: int = knob_from(SamplingParams, "seed", default=0, help="seed of the random choices when "
                          "sampling; the same seed, prompt and settings give the same answer")
    json_schema: str = knob("", "structured output: 'any' (any JSON object) or a JSON Schema file; the "
                            "answer then parses and follows it")
    device: str = device_knob()


def remote_timeout_knob() -> float:
    return knob(60.0, "seconds to wait for an OpenAI-compatible server's next answer before a request to it "
                "fails with a one-line timeout error", minimum=1.0, maximum=3600.0, group="remote server")


def backend_knob() -> str:
    return knob("auto", "what runs the model: auto (llama.cpp for a .gguf model where llama-cpp-python is "
                "installed, else transformers), llama.cpp or transformers",
                choices=("auto", "llama.cpp", "transformers"))


@dataclass
class SessionOptions:
    device: str = device_knob()
    max_models: int = knob(0, "base models kept loaded at once (default 0: as many as fit in memory, up to 4)")
    remote_timeout: float = remote_timeout_knob()


@dataclass
class SpeedOptions:
    """CPU speed options of the long-lived inference commands (session, serve)."""

    int8: bool = knob(True, "CPU: keep fp32 weights (default: weight-only int8 Linear layers, about 1.7x as "
                      "fast, fp32's greedy token ~96% of the time; see benchmarks/decode_speed.py)",
                      flags=("--fp32",))
    threads: int = knob(0, "CPU threads for torch and llama.cpp (default 0: one per core; 1 is faster on a "
                        "busy shared CPU)")
    backend: str = backend_knob()
    context: int = knob(4096, "llama.cpp: tokens of KV cache per model (the model's trained context when "
                        "smaller); prompt plus answer must fit", minimum=256, maximum=1_048_576)


@dataclass
class ServeOptions:
    model: str | None = knob(None, BASE_MODEL_HELP)
    adapter: str = knob("", ADAPTER_HELP)
    host: str = knob("127.0.0.1", "address to listen on (default 127.0.0.1: this machine only); another "
                     "address, such as 0.0.0.0 for every network, also needs --allow-remote", group="network")
    port: int = knob(0, "port to listen on (default 0: any free port)", group="network")
    allow_remote: bool = knob(False, "let a non-loopback --host expose the model to other machines (plain "
                              "HTTP; they still need the token); a warning is printed", group="network")
    allow_origin: list[str] = knob([], "a web page origin (scheme://host[:port], e.g. http://localhost:3000) "
                                   "whose scripts may call the endpoint from a browser (repeatable); requests "
                                   "carrying any other Origin are refused", repeatable=True, group="network",
                                   metavar="ORIGIN")
    max_tokens: int = knob(4096, "the largest max_tokens a request may ask for; larger ones get HTTP 400",
                           minimum=1, maximum=32_768, group="limits")
    max_waiting: int = knob(4, "requests that may wait while one is generating; more get HTTP 429 (busy)",
                            minimum=0, maximum=1000, group="limits")
    device: str = device_knob()


@dataclass
class BatchOptions:
    suite: str = knob("", "a saved suite name or a suite JSON file")
    file: str = knob("", "a CSV/TSV/JSONL file whose --column holds the prompts")
    column: str = knob("", "the column (or JSONL field) of --file")
    mode: str = knob("chat", "--file prompts: chat or raw", choices=("chat", "raw"))
    system: str = knob("", "--file prompts: a system prompt")
    config: str = knob("", "configurations (model x adapter x params) as a JSON list or TOML [[config]] "
                       "tables; without it one configuration from the flags below")
    model: str | None = knob(None, "base model (default: the adapter's base, else the bundled model); with "
                             "--base-url, the server's model id")
    adapter: str = knob("", ADAPTER_HELP)
    base_url: str = knob("", "an OpenAI-compatible server (Ollama, LM Studio, llama-server, vLLM, serve) to "
                         "answer instead of a local model, e.g. http://127.0.0.1:11434/v1", group="remote server")
    api_key_env: str = knob("", "the environment variable that holds the server's API key (a key is never "
                            "given on the command line, where other users can read it)", group="remote server",
                            metavar="VAR")
    remote_timeout: float = remote_timeout_knob()
    max_new_tokens: int = knob_from(SamplingParams, "max_new_tokens", default=128)
    temperature: float = knob_from(SamplingParams, "temperature", default=0.0, help=GREEDY_HELP)
    top_p: float = knob_from(SamplingParams, "top_p", default=1.0)
    stop: list[str] = knob([], "a stop string (repeatable)", repeatable=True)
    seed: int | None = knob_from(SamplingParams, "seed", help="seed of the random choices when sampling "
                                 "(default: a new random answer each time)")
    json_schema: str = knob("", "structured output: 'any' (any JSON object) or a JSON Schema file; every "
                            "answer then parses and follows it (a configuration file sets params.json_schema)")
    name: str = knob("", "a label for the batch folder")
    backend: str = backend_knob()
    device: str = device_knob()
