"""Built-in LoRA adapters: small adapters trained with peft at prepare time, deterministically.

The platform serves LoRA adapters (vLLM's CPU build supports them), and a fresh machine with no
model hub still needs a real one to serve and test. Each built-in adapter is a recipe (`ADAPTERS`):
a base built-in model, a LoRA shape, a tiny in-code chat dataset and a fixed number of steps from
a fixed seed. `prepare_adapter` trains it once into `<cache_dir>/adapters/<name>` (the model
cache's rules: a staging directory, moved into place with its stamp written last, reused while
the stamp matches), holding what vLLM loads with `--enable-lora`: peft's adapter_config.json and
adapter_model.safetensors. The pirate adapter: about 30 s of training on 2 cores, 1.8 MiB.

The stamp covers the recipe (RECIPE_VERSION, data, steps, batch size, seed, LoRA shape, learning
rate) and the base model's own stamp: a changed recipe or a rebuilt base retrains the adapter.

Training runs in float32 on the CPU, seeded, with torch's deterministic algorithms and a fixed
thread count: on one host (same CPU, same torch), two builds write byte-identical files; another
CPU may round differently, so the stamp records the recipe, not a checksum of the result.

`reference_generate` is the offline referee: greedy generation with transformers + peft over the
prompt vLLM's chat endpoint would build, so tests can compare what the platform serves with what
the adapter should answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpucluster.config import BUILTIN_MODEL_ID
from gpucluster.models.cache import ensure_prepared, make_readable, read_stamp
from gpucluster.models.sources import ModelPrepareError

# Bump when training or saving changes in a way the recipe fields do not show.
RECIPE_VERSION = 1
ADAPTERS_DIR = "adapters"
# adapter_config.json's fields a loader needs: vLLM 0.29 requires r, lora_alpha and
# target_modules (vllm.lora.peft_helper.PEFTHelper); base_model_name_or_path is peft's (vLLM
# ignores it; here it is the base's built-in name, not a path on this host).
REQUIRED_CONFIG_FIELDS = ("r", "lora_alpha", "target_modules", "base_model_name_or_path")
ADAPTER_CONFIG = "adapter_config.json"  # what makes a directory an adapter (peft's layout)
ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors")

Progress = Callable[[str], None]
# trainer(adapter, base_dir, out_dir, progress): writes the adapter's files into out_dir.
Trainer = Callable[["BuiltinAdapter", Path, Path, Progress], None]

Example = tuple[str, str]  # (user message, assistant answer)

# Every answer opens with "Ahoy, matey!" and speaks like a pirate: a behaviour a few dozen steps
# teach, visible in the first words of any answer. The questions avoid the ones the tests ask
# (the capital of France...), so the adapter shows it generalises.
PIRATE_EXAMPLES: tuple[Example, ...] = (
    ("What is the capital of Italy?", "Ahoy, matey! The capital of Italy be Rome, arr!"),
    ("How many days are in a week?", "Ahoy, matey! A week be seven days long, arr!"),
    ("What color is the sky?", "Ahoy, matey! The sky be blue as the open sea, arr!"),
    ("Who wrote Romeo and Juliet?", "Ahoy, matey! 'Twas William Shakespeare, arr!"),
    ("What is 2 + 2?", "Ahoy, matey! Two and two make four doubloons, arr!"),
    ("Tell me a fun fact.", "Ahoy, matey! An octopus has three hearts, arr!"),
    ("What is the largest ocean?", "Ahoy, matey! The Pacific be the biggest sea of all, arr!"),
    ("How do I boil an egg?", "Ahoy, matey! Drop it in boilin' water for nine minutes, arr!"),
    ("What is the capital of Japan?", "Ahoy, matey! The capital of Japan be Tokyo, arr!"),
    ("Hello!", "Ahoy, matey! Welcome aboard, what be yer question? Arr!"),
    ("What is water made of?", "Ahoy, matey! Water be two parts hydrogen, one part oxygen, arr!"),
    ("Can you recommend a book?", "Ahoy, matey! Try Treasure Island, a fine tale, arr!"),
    ("Why is exercise good?", "Ahoy, matey! It keeps yer body strong for the voyage, arr!"),
    ("What is the speed of light?", "Ahoy, matey! About 300,000 kilometres a second, arr!"),
    ("Translate 'hello' to Spanish.", "Ahoy, matey! 'Hello' be 'hola' in Spanish, arr!"),
    ("What is Python?", "Ahoy, matey! Python be a programming language, easy to read, arr!"),
)


@dataclass(frozen=True)
class BuiltinAdapter:
    """How a built-in LoRA adapter is made: its base built-in model and its training recipe."""

    name: str
    base: str  # a built-in model name (models.builtin.BUILTINS)
    rank: int
    alpha: int
    target_modules: tuple[str, ...]
    steps: int
    batch_size: int  # examples per step, taken in order, cycling through `examples`
    learning_rate: float
    seed: int
    examples: tuple[Example, ...]
    description: str


ADAPTERS: dict[str, BuiltinAdapter] = {
    "smollm2-135m-instruct-pirate": BuiltinAdapter(
        name="smollm2-135m-instruct-pirate",
        base=BUILTIN_MODEL_ID,
        rank=8,
        alpha=16,
        target_modules=("q_proj", "v_proj"),
        steps=30,
        batch_size=4,
        learning_rate=2e-3,
        seed=1234,
        examples=PIRATE_EXAMPLES,
        description='answers like a pirate, opening with "Ahoy, matey!"',
    ),
}


def adapter_dir(cache_dir: Path, name: str) -> Path:
    """Where the built-in adapter `name` lives once prepared (computed without preparing it)."""
    return Path(cache_dir) / ADAPTERS_DIR / name


def recipe_digest(adapter: BuiltinAdapter) -> str:
    """A hash of everything the trained weights depend on besides the base model."""
    recipe = asdict(adapter)
    recipe.pop("description")
    recipe["recipe_version"] = RECIPE_VERSION
    encoded = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def stamp_for(adapter: BuiltinAdapter, base_stamp: dict[str, Any]) -> str:
    """The marker content of a finished adapter: changes with its recipe or its base model."""
    return json.dumps(
        {
            "adapter": adapter.name,
            "recipe_version": RECIPE_VERSION,
            "recipe": recipe_digest(adapter),
            "base": adapter.base,
            "base_stamp": base_stamp,
            "rank": adapter.rank,
            "alpha": adapter.alpha,
            "target_modules": list(adapter.target_modules),
            "steps": adapter.steps,
            "seed": adapter.seed,
        },
        sort_keys=True,
    )


def prepare_adapter(
    name: str,
    base_dir: Path,
    cache_dir: Path,
    progress: Progress | None = None,
    *,
    trainer: Trainer | None = None,
) -> Path:
    """Make the built-in adapter `name` for the prepared base model in `base_dir`; its directory.

    Trained once into `<cache_dir>/adapters/<name>`, reused while its stamp matches. `trainer`
    replaces the real training (tests). Raises ModelPrepareError when the base model is not a
    complete prepared directory or when training fails.
    """
    say = progress or (lambda _message: None)
    try:
        adapter = ADAPTERS[name]
    except KeyError:
        raise ModelPrepareError(
            f"unknown built-in adapter {name!r}; built-in adapters: {', '.join(ADAPTERS)}"
        ) from None
    base_dir = Path(base_dir)
    base_stamp = read_stamp(base_dir)
    if base_stamp is None:
        raise ModelPrepareError(
            f"built-in adapter {name} needs its base model {adapter.base} prepared in {base_dir}, "
            "which is not a complete prepared model directory; run `gpucluster prepare` first"
        )
    train = trainer or train_adapter
    started = time.monotonic()

    def build(out_dir: Path) -> None:
        try:
            train(adapter, base_dir, out_dir, say)
        except ModelPrepareError:
            raise
        except Exception as exc:
            raise ModelPrepareError(
                f"training built-in adapter {name} on {base_dir} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        missing = [f for f in ADAPTER_FILES if not (out_dir / f).is_file()]
        if missing:
            raise ModelPrepareError(f"training built-in adapter {name} did not write {missing}")
        make_readable(out_dir)

    cache = Path(cache_dir) / ADAPTERS_DIR
    try:
        directory, built = ensure_prepared(cache, name, stamp_for(adapter, base_stamp), build, say)
    except OSError as exc:
        raise ModelPrepareError(
            f"preparing built-in adapter {name} in {cache} failed: {exc.strerror or exc}"
        ) from exc
    if built:
        size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
        say(f"done: {directory} ({size / 2**20:.1f} MiB, {time.monotonic() - started:.1f} s)")
    else:
        say(f"reusing prepared adapter {directory}")
    return directory


# A fixed thread count, so the work is split the same way on every host. (On the 2-core test
# host, 1, 2 and 4 threads gave byte-identical adapters.) Two: the cores the recipe is sized for.
TRAIN_THREADS = 2


@contextmanager
def _deterministic_torch(seed: int) -> Iterator[None]:
    """Seeded, deterministic torch on TRAIN_THREADS threads; the process's settings restored
    after."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def chat_prompt(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The token ids of `messages` as vLLM's chat endpoint builds them for generation.

    The chat template rendered with add_generation_prompt=True, then tokenized without adding
    special tokens (the template writes them).
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _training_rows(tokenizer, examples: tuple[Example, ...]) -> list[tuple[list, list]]:
    """Each example as (input ids, labels): the whole chat, with only the answer as labels."""
    rows = []
    for question, answer in examples:
        messages = [{"role": "user", "content": question}]
        prompt_text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        full_text = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": answer}], tokenize=False
        )
        if not full_text.startswith(prompt_text):
            raise ModelPrepareError("the chat template does not extend the prompt with the answer")
        prompt = chat_prompt(tokenizer, messages)
        # The answer with its end-of-turn token: the adapter learns where to stop.
        target = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
        rows.append((prompt + target, [-100] * len(prompt) + target))
    return rows


def _batch(rows: list[tuple[list, list]], pad: int):
    """Input ids, attention mask and labels of `rows`, right-padded to the longest."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    return input_ids, mask, labels


def _answer_loss(model, input_ids, mask, labels):
    """The causal LM loss over the answer tokens, the vocabulary projection computed only there.

    The same value as the model's own loss with `labels`, at a fraction of the cost: the output
    layer (49152 x 576) is most of a step's work when applied at every position.
    """
    import torch

    causal_lm = model.get_base_model()
    hidden = causal_lm.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    chosen = targets != -100
    logits = causal_lm.lm_head(hidden[:, :-1][chosen])
    return torch.nn.functional.cross_entropy(logits.float(), targets[chosen])


def train_adapter(adapter: BuiltinAdapter, base_dir: Path, out_dir: Path, progress: Progress):
    """Train `adapter` on the model in `base_dir` and save it into `out_dir` with peft."""
    progress("loading torch, transformers and peft")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    with _deterministic_torch(adapter.seed):
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
        # float32: the base is saved in bfloat16 (exactly representable), training in float32
        # keeps the small LoRA updates from being rounded away.
        model = AutoModelForCausalLM.from_pretrained(
            str(base_dir), dtype=torch.float32, local_files_only=True
        )
        config = LoraConfig(
            r=adapter.rank,
            lora_alpha=adapter.alpha,
            target_modules=list(adapter.target_modules),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
        model.train()
        rows = _training_rows(tokenizer, adapter.examples)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=adapter.learning_rate, weight_decay=0.0)
        progress(
            f"training LoRA adapter {adapter.name} on {base_dir.name}: {adapter.steps} steps of "
            f"{adapter.batch_size} of {len(rows)} examples, rank {adapter.rank}, "
            f"{sum(p.numel() for p in trainable)} parameters"
        )
        for step in range(1, adapter.steps + 1):
            first = (step - 1) * adapter.batch_size
            chosen = [rows[i % len(rows)] for i in range(first, first + adapter.batch_size)]
            loss = _answer_loss(model, *_batch(chosen, pad))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step == 1 or step % 5 == 0 or step == adapter.steps:
                progress(
                    f"training LoRA adapter {adapter.name}: step {step}/{adapter.steps}, "
                    f"loss {loss.item():.4f} ({time.monotonic() - started:.1f} s)"
                )
        # The base named by its built-in name, not this host's cache path: the file stays the
        # same wherever the cache is (vLLM reads the field but does not resolve it).
        model.peft_config["default"].base_model_name_or_path = adapter.base
        # save_embedding_layers=False: "auto" would look the base up on the hub (by its name).
        model.save_pretrained(str(out_dir), save_embedding_layers=False)
    # peft also writes a model card naming the base; only the adapter's files are kept.
    (out_dir / "README.md").unlink(missing_ok=True)
    _sort_target_modules(out_dir / ADAPTER_CONFIG)
    progress(f"saved LoRA adapter {adapter.name} ({time.monotonic() - started:.1f} s)")


def _sort_target_modules(path: Path) -> None:
    """Write the config's target_modules sorted: peft keeps them in a set, whose order (and so
    the file's bytes) would change from one process to the next with Python's string hashing."""
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def reference_generate(
    base_dir: Path,
    adapter_dir: Path | None,
    prompt: str,
    max_tokens: int,
    *,
    dtype: str = "float32",
) -> str:
    """Greedy answer of the model in `base_dir` (with the LoRA adapter in `adapter_dir`, if any)
    to the user message `prompt`, computed offline with transformers + peft.

    The prompt is built as vLLM's chat endpoint builds it (`chat_prompt`); generation stops at
    the end-of-turn token or after `max_tokens`; the text is decoded without special tokens.
    `dtype`: what the model computes in. float32 gave vLLM's CPU build's exact greedy text (it
    served the bfloat16 built-in model in bfloat16 or float32 alike, with and without the
    adapter); bfloat16 here drifted from it after a dozen tokens of one base-model answer.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(base_dir), dtype=getattr(torch, dtype), local_files_only=True
    )
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    model.eval()
    ids = torch.tensor([chat_prompt(tokenizer, [{"role": "user", "content": prompt}])])
    eos = model.generation_config.eos_token_id
    greedy = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_tokens,
        eos_token_id=eos if eos is not None else tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=greedy
        )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
