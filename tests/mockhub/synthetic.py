"""A synthetic Hugging Face catalogue of N models, generated on the fly, for hub-scale benchmarks.

``python -m tests.mockhub --synthetic N`` serves it. Every model is a pure function of its index
and the seed, so a catalogue of a million models costs no memory and the same run twice sees the
same bytes. The entries have the real list format with ``expand`` (see ../shared/HUBS.md and the
recorded bodies in ../shared/hubdata/huggingface/model_info/): card data, siblings, config with
tokenizer settings and chat templates, safetensors/gguf parameter counts, model-index results,
base-model relations, messy license spellings and GitHub links, a few KB per model.

Speed: the heavy properties come from a pool of pre-rendered variants (orjson bytes, built once
at start), and a model is assembled from byte fragments, so a 1,000-model page costs a few
milliseconds and the mock is never what a benchmark measures.

Order and ``_id``s as on the Hub. A model's ``_id`` is a MongoDB ObjectId whose first four
bytes are its creation time (every recorded body in ../shared/hubdata/huggingface/model_info/ has
``createdAt`` equal to its ``_id``'s timestamp; the 2022-03-02T23:29:04/05 placeholders are the
``621ffdc0``/``621ffdc1`` ids of the repositories migrated then). The Hub's default list order is
by ``trendingScore``, then ``_id`` ascending: its cursors decode to ``{"$or": [{"trendingScore":
0, "_id": {"$gt": "6290..."}}, {"trendingScore": {"$lt": 0}}, ...]}``, and a sweep is past the
trending models within its first pages. So the first 1% of the catalogue (an assumption) trends,
with recent, scattered ids; then come the migrated repositories (5%, in id order) and the rest
in creation order, 2022-03-03 to 2025-03.

Owners follow a Zipf-Mandelbrot law, P(rank r) ~ 1/(r + 5) over N/2 ranks: about one owner per
five models (~200k at N = 1M, as on the Hub, whose ~2M models come from some 400k accounts), 60%
of owners with a single model, and the largest with ~1.6% of all models (the Hub's biggest
publishers, quantisation bots, hold 1-3%). Top ranks are mostly organisations, the long tail
mostly users, so ``/api/organizations/{name}/overview`` answers 404 for most owners, as it does
on the Hub.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import math
import re
import string
import threading
from collections.abc import Iterator, Mapping, Sequence
from random import Random
from typing import Any, overload

import orjson

from tests.mockhub.huggingface import decode_cursor, encode_cursor
from tests.mockhub.server import MockHub, MockRequest, MockResponse

PAGE_SIZE = 1000
MAX_MODELS = 10_000_000
FILTER_PARAMS = ("search", "author", "filter", "pipeline_tag", "library", "sort")
VARIANTS_PER_ARCHETYPE = 24
_M64 = (1 << 64) - 1
_ZIPF_Q = 5.0  # Zipf-Mandelbrot offset: flattens the head so no owner holds more than ~2%

# Properties in the order the mock writes them; ``_id`` and ``id`` always come first.
LIGHT_KEYS = (
    "author", "createdAt", "disabled", "downloads", "downloadsAllTime", "gated", "lastModified",
    "likes", "private", "sha", "trendingScore", "usedStorage", "childrenModelCount",
)
HEAVY_KEYS = (
    "baseModels", "cardData", "config", "gguf", "inference", "library_name", "mask_token",
    "model-index", "pipeline_tag", "safetensors", "siblings", "spaces", "tags",
    "transformersInfo", "widgetData", "evalResults",
)
ALL_KEYS = LIGHT_KEYS + HEAVY_KEYS
LIST_DEFAULT = ("likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag",
                "library_name", "createdAt")


class SyntheticUnsupported(ValueError):
    """A list query the synthetic catalogue cannot answer (filters, sort)."""


def mix64(x: int) -> int:
    """splitmix64: a fast, well-spread hash of an integer (the per-model seed)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def to_base36(n: int) -> str:
    digits = string.digits + string.ascii_lowercase
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


# --- owners ---------------------------------------------------------------------------------

_SYLLABLES = (
    "ka", "lo", "mi", "ra", "ven", "tor", "zen", "qui", "bel", "dar", "fin", "gor", "hal",
    "jun", "kel", "lum", "mor", "nex", "ori", "pax", "quo", "rin", "sol", "tav", "ul", "vor",
    "wex", "xan", "yul", "zor", "ast", "bri",
)
_ORG_SUFFIXES = ("-ai", "-labs", "-research", "", "-nlp", "-org")
_ORG_PLANS = ("team", "enterprise", None, None, "free")


@functools.lru_cache(maxsize=1 << 16)
def owner_name(rank: int) -> str:
    """A unique, pronounceable owner name; ranks >= 1024 end in their number."""
    base = _SYLLABLES[rank % 32] + _SYLLABLES[(rank // 32) % 32]
    if is_org(rank):
        base += _ORG_SUFFIXES[rank % len(_ORG_SUFFIXES)]
        if rank < 40:
            base = base.capitalize()
    elif rank % 3 == 0:
        base = base.capitalize()
    return base if rank < 1024 else f"{base}{rank}"


def _org_card(rank: int) -> dict[str, str]:
    """An organisation as a user overview's ``orgs`` names it; its own overview starts so."""
    name = owner_name(rank)
    return {"name": name, "fullname": name.replace("-", " ").title(),
            "avatarUrl": "https://cdn-avatars.huggingface.co/v1/production/uploads/"
                         f"{mix64(rank ^ 0x0E7E5):x}.png"}


def is_org(rank: int) -> bool:
    """Big publishers are mostly organisations, the long tail mostly users."""
    h = mix64(rank ^ 0x5EED0F0) % 100
    return h < (90 if rank < 100 else 40 if rank < 5000 else 10)


# --- the heavy, pooled properties ----------------------------------------------------------

_LANGS = ("en", "de", "fr", "es", "zh", "ja", "ko", "ru", "pt", "it", "ar", "hi", "multilingual")
_DATASETS = ("bookcorpus", "wikipedia", "c4", "the_pile", "imdb", "glue", "squad", "conll2003",
             "common_voice", "librispeech_asr", "imagenet-1k", "cifar10", "laion/laion2B-en",
             "HuggingFaceH4/ultrachat_200k", "Open-Orca/SlimOrca", "tatsu-lab/alpaca")
_ARXIV = ("1810.04805", "1706.03762", "2307.09288", "2106.09685", "2010.11929", "1907.11692",
          "2212.04356", "2305.14314", "2402.17764", "1910.10683", "2112.10752", "1707.06347")
# Hub spellings, clean and messy: the normaliser's alias table and its slow path both run.
_LICENSES = ("apache-2.0", "mit", "apache-2.0", "cc-by-4.0", "openrail", "llama3.1", "other",
             "cc-by-nc-4.0", "Apache 2.0", "MIT License", "gpl-3.0", "creativeml-openrail-m",
             "bsd-3-clause", "unknown", "cc-by-sa-4.0", "gemma", "afl-3.0", "Proprietary-ish")
_BASES = ("meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-v0.1", "Qwen/Qwen2.5-7B",
          "google/gemma-2-9b", "microsoft/phi-2", "google-bert/bert-base-uncased",
          "FacebookAI/roberta-base", "stabilityai/stable-diffusion-xl-base-1.0",
          "openai/whisper-small", "TinyLlama/TinyLlama-1.1B-Chat-v1.0")
_LLM_BASES = _BASES[:5] + _BASES[-1:]
_GITHUB = ("https://github.com/huggingface/transformers", "github.com/ggerganov/llama.cpp.git",
           "https://github.com/Lightning-AI/lit-gpt/blob/main/README.md",
           "https://www.github.com/hiyouga/LLaMA-Factory", "https://github.com/DLR-RM/rl-baselines3-zoo")
_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}"
    "{%- endif %}{{- bos_token }}{%- for message in loop_messages %}{%- if (message['role'] == "
    "'user') != (loop.index0 % 2 == 0) %}{{- raise_exception('Conversation roles must alternate"
    " user/assistant/user/assistant/...') }}{%- endif %}{%- if message['role'] == 'user' %}"
    "{{- '[INST] ' + message['content'] + ' [/INST]' }}{%- elif message['role'] == 'assistant'"
    " %}{{- ' ' + message['content'] + eos_token}}{%- endif %}{%- endfor %}\n"
)
_CARD_PROSE = (
    "This model is a fine-tuned version of the base model on an instruction dataset. It "
    "achieves competitive results on the evaluation set. Intended uses and limitations: "
    "research only; outputs may be inaccurate or biased. Training procedure: AdamW, linear "
    "schedule, warmup ratio 0.03, bf16 mixed precision. "
)

# (archetype, weight in percent): roughly the Hub's mix of repositories.
ARCHETYPES = (
    ("causal_lm", 22), ("gguf", 12), ("peft", 14), ("encoder", 14), ("sentence", 6),
    ("diffusers", 8), ("rl", 8), ("timm", 5), ("audio", 5), ("misc", 6),
)


def _sample(rng: Random, pool: Sequence[str], lo: int, hi: int) -> list[str]:
    return rng.sample(list(pool), rng.randint(lo, min(hi, len(pool))))


def _safetensors(rng: Random, dtype: str, total: int) -> dict[str, Any]:
    params = {dtype: total}
    if rng.random() < 0.3:
        params["F32"] = rng.randint(1000, 300_000)
    return {"parameters": params, "total": sum(params.values())}


def _shards(rng: Random, stem: str, ext: str, count: int) -> list[dict[str, Any]]:
    if count == 1:
        return [{"rfilename": f"{stem}.{ext}"}]
    return [{"rfilename": f"{stem}-{k:05d}-of-{count:05d}.{ext}"} for k in range(1, count + 1)]


def _model_index(rng: Random, name: str, task: str, metric: str, dataset: str) -> list[Any]:
    return [{"name": name, "results": [{
        "task": {"type": task, "name": task.replace("-", " ").title()},
        "dataset": {"name": dataset, "type": dataset, "split": "test",
                    "config": "default", "args": "default"},
        "metrics": [{"type": metric, "value": round(rng.uniform(0.3, 0.99), 4), "name": metric,
                     "verified": False} for _ in range(rng.randint(1, 3))],
    }]}]


def _variant(archetype: str, rng: Random) -> tuple[str, dict[str, Any]]:
    """One pooled variant of an archetype: a name stem and its heavy properties."""
    lang = _sample(rng, _LANGS, 1, 4)
    datasets = _sample(rng, _DATASETS, 0, 3)
    arxiv = _sample(rng, _ARXIV, 0, 2)
    license_ = rng.choice(_LICENSES)
    base = rng.choice(_BASES)
    card: dict[str, Any] = {"language": lang if len(lang) > 1 else lang[0], "license": license_}
    if license_ == "other":
        card["license_name"] = rng.choice(("llama3", "deepseek", "qwen-research", "custom"))
        card["license_link"] = "LICENSE"
    if datasets:
        card["datasets"] = datasets
    if rng.random() < 0.25:
        card["tags"] = _sample(rng, ("generated_from_trainer", "trl", "sft", "dpo", "unsloth",
                                     "text-generation-inference", "chat", "merge"), 1, 4)
    if rng.random() < 0.2:
        card["repository"] = rng.choice(_GITHUB)
    if rng.random() < 0.15:
        card["widget"] = [{"text": "Once upon a time, in a quiet village,"},
                          {"text": "Translate to French: The weather is nice today."}]
    tags: list[str] = []
    d: dict[str, Any] = {}
    stem = archetype
    sib: list[dict[str, Any]] = [{"rfilename": ".gitattributes"}, {"rfilename": "README.md"}]
    if rng.random() < 0.05:
        sib.pop(1)  # no model card
    if archetype in ("causal_lm", "gguf", "peft"):
        family = rng.choice(("Llama", "Mistral", "Qwen2", "Gemma2", "Phi3"))
        size = rng.choice(("0.5B", "1.1B", "3B", "7B", "8B", "13B", "70B"))
        billions = float(size[:-1]) * 1e9
        base = rng.choice(_LLM_BASES)
        stem = f"{family}-{size}-{rng.choice(('Instruct', 'chat', 'sft', 'dpo', 'v2', 'merged'))}"
        card["base_model"] = base if rng.random() < 0.8 else [base, rng.choice(_BASES)]
        card["pipeline_tag"] = "text-generation"
        d["pipeline_tag"] = "text-generation"
        if archetype == "gguf":
            quants = _sample(rng, ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0",
                                   "IQ4_XS", "f16"), 3, 9)
            sib += [{"rfilename": f"{stem}.{q}.gguf"} for q in quants]
            d["library_name"] = "gguf" if rng.random() < 0.7 else None
            d["gguf"] = {"total": int(billions), "architecture": family.lower(),
                         "context_length": rng.choice((4096, 8192, 32768, 131072)),
                         "chat_template": _CHAT_TEMPLATE, "bos_token": "<s>", "eos_token": "</s>"}
            tags += ["gguf", "conversational", f"base_model:quantized:{base}",
                     f"base_model:{base}"]
            stem += "-GGUF"
        elif archetype == "peft":
            sib += [{"rfilename": "adapter_config.json"},
                    {"rfilename": "adapter_model.safetensors"},
                    {"rfilename": "training_args.bin"}, {"rfilename": "tokenizer.json"},
                    {"rfilename": "tokenizer_config.json"},
                    {"rfilename": "special_tokens_map.json"}]
            d["library_name"] = "peft"
            tags += ["peft", "safetensors", "lora", "generated_from_trainer",
                     f"base_model:adapter:{base}", f"base_model:{base}"]
            stem += "-lora"
        else:
            shards = rng.choice((1, 2, 4, 4, 8, 30))
            sib += [{"rfilename": "config.json"}, {"rfilename": "generation_config.json"},
                    *_shards(rng, "model", "safetensors", shards),
                    {"rfilename": "model.safetensors.index.json"},
                    {"rfilename": "tokenizer.json"}, {"rfilename": "tokenizer_config.json"},
                    {"rfilename": "special_tokens_map.json"}]
            d["library_name"] = "transformers"
            d["safetensors"] = _safetensors(rng, "BF16", int(billions))
            d["config"] = {
                "architectures": [f"{family}ForCausalLM"], "model_type": family.lower(),
                "tokenizer_config": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": None,
                                     "unk_token": "<unk>", "use_default_system_prompt": False,
                                     "chat_template": _CHAT_TEMPLATE * rng.randint(1, 3)},
            }
            d["transformersInfo"] = {"auto_model": "AutoModelForCausalLM",
                                     "pipeline_tag": "text-generation",
                                     "processor": "AutoTokenizer"}
            d["inference"] = rng.choice(("warm", "cold", None))
            tags += ["transformers", "safetensors", family.lower(), "text-generation",
                     "conversational", f"base_model:finetune:{base}", f"base_model:{base}",
                     "text-generation-inference", "autotrain_compatible",
                     "endpoints_compatible"]
        if rng.random() < 0.1:  # a gated, Llama-style card with its agreement text
            card["extra_gated_prompt"] = _CARD_PROSE * rng.randint(10, 45)
            card["extra_gated_fields"] = {"First Name": "text", "Last Name": "text",
                                          "Country": "country", "Affiliation": "text"}
        relation = {"gguf": "quantized", "peft": "adapter"}.get(archetype, "finetune")
        base_uid = f"{mix64(sum(map(ord, base))):016x}{len(base):08x}"
        d["baseModels"] = {"relation": relation, "models": [{"id": base, "_id": base_uid}]}
    elif archetype in ("encoder", "sentence"):
        family = rng.choice(("bert", "roberta", "deberta-v2", "distilbert", "xlm-roberta",
                             "electra"))
        task = rng.choice(("text-classification", "token-classification", "fill-mask",
                           "question-answering")) if archetype == "encoder" else \
            rng.choice(("sentence-similarity", "feature-extraction"))
        stem = f"{family}-base-finetuned-{rng.choice(datasets or ['custom'])}".replace("/", "-")
        sib += [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"},
                {"rfilename": "pytorch_model.bin"}, {"rfilename": "tokenizer.json"},
                {"rfilename": "vocab.txt"}, {"rfilename": "training_args.bin"}]
        if archetype == "sentence":
            sib += [{"rfilename": "modules.json"}, {"rfilename": "1_Pooling/config.json"},
                    {"rfilename": "sentence_bert_config.json"}]
            d["library_name"] = "sentence-transformers"
            tags += ["sentence-transformers", "feature-extraction", "mteb"]
        else:
            d["library_name"] = "transformers"
            d["mask_token"] = "[MASK]" if task == "fill-mask" else None
        d["pipeline_tag"] = task
        d["config"] = {"architectures": [f"{family.title().replace('-', '')}Model"],
                       "model_type": family, "tokenizer_config": {"unk_token": "[UNK]"}}
        d["safetensors"] = _safetensors(rng, "F32", rng.randint(4_000_000, 560_000_000))
        d["transformersInfo"] = {"auto_model": "AutoModel", "pipeline_tag": task,
                                 "processor": "AutoTokenizer"}
        tags += ["transformers", "pytorch", "safetensors", family, task, "generated_from_trainer"]
        if rng.random() < 0.6:
            mi = _model_index(rng, stem, task, rng.choice(("accuracy", "f1")),
                              rng.choice(datasets or ["glue"]))
            card["model-index"] = mi
            d["model-index"] = mi
            card["metrics"] = ["accuracy", "f1"]
    elif archetype == "diffusers":
        stem = rng.choice(("sdxl-lora", "sd15-dreambooth", "flux-lora", "sd21-finetune"))
        sib += [{"rfilename": p} for p in (
            "model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
            "text_encoder/model.safetensors", "tokenizer/merges.txt", "tokenizer/vocab.json",
            "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors", "image_0.png", "image_1.png")[
            : rng.randint(4, 12)]]
        d["library_name"] = "diffusers"
        d["pipeline_tag"] = "text-to-image"
        card["instance_prompt"] = "a photo of sks dog"
        card["license"] = rng.choice(("creativeml-openrail-m", "openrail++", "other",
                                      "CreativeML OpenRAIL-M"))
        tags += ["diffusers", "text-to-image", "stable-diffusion", "lora",
                 f"base_model:adapter:{base}", "template:sd-lora"]
    elif archetype == "rl":
        env = rng.choice(("LunarLander-v2", "CartPole-v1", "SpaceInvadersNoFrameskip-v4",
                          "Huggy", "PandaReachDense-v3"))
        algo = rng.choice(("ppo", "dqn", "a2c", "sac"))
        stem = f"{algo}-{env}"
        sib += [{"rfilename": f"{algo}-{env}.zip"}, {"rfilename": "config.json"},
                {"rfilename": "replay.mp4"}, {"rfilename": "results.json"}]
        d["library_name"] = rng.choice(("stable-baselines3", "ml-agents", "sample-factory"))
        d["pipeline_tag"] = "reinforcement-learning"
        mi = _model_index(rng, algo.upper(), "reinforcement-learning", "mean_reward", env)
        card["model-index"] = mi
        d["model-index"] = mi
        tags += [d["library_name"], env, "deep-reinforcement-learning",
                 "reinforcement-learning", "model-index"]
    elif archetype == "timm":
        arch = rng.choice(("resnet50", "vit_base_patch16_224", "convnext_tiny", "efficientnet_b0"))
        stem = f"{arch}.{rng.choice(('a1_in1k', 'augreg_in21k', 'fb_in22k_ft_in1k'))}"
        sib += [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"},
                {"rfilename": "pytorch_model.bin"}]
        d["library_name"] = "timm"
        d["pipeline_tag"] = "image-classification"
        d["safetensors"] = _safetensors(rng, "F32", rng.randint(5_000_000, 90_000_000))
        d["config"] = {"architecture": arch, "num_classes": 1000, "num_features": 2048}
        tags += ["timm", "pytorch", "safetensors", "image-classification", "dataset:imagenet-1k"]
    elif archetype == "audio":
        family = rng.choice(("whisper", "wav2vec2", "speechbrain"))
        stem = f"{family}-{rng.choice(lang)}-asr"
        sib += [{"rfilename": "hyperparams.yaml"}, {"rfilename": "model.ckpt"}] \
            if family == "speechbrain" else [{"rfilename": "config.json"},
                                             {"rfilename": "model.safetensors"},
                                             {"rfilename": "preprocessor_config.json"}]
        d["library_name"] = "speechbrain" if family == "speechbrain" else "transformers"
        d["pipeline_tag"] = "automatic-speech-recognition"
        d["config"] = {"speechbrain_interface": "EncoderDecoderASR"} if family == "speechbrain" \
            else {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper"}
        tags += [d["library_name"], "audio", "automatic-speech-recognition", "hf-asr-leaderboard"]
    else:  # misc: sklearn, keras, onnx, no library at all, odd cards
        kind = rng.choice(("sklearn", "keras", "onnx", None, None))
        stem = f"{kind or 'experiment'}-{rng.choice(('tabular', 'vision', 'demo', 'test'))}"
        sib += [{"rfilename": {"sklearn": "model.joblib", "keras": "saved_model.pb",
                               "onnx": "model.onnx"}.get(kind or "", "weights.pt")}]
        if kind:
            d["library_name"] = kind
            tags.append(kind)
        if rng.random() < 0.5:
            card = {"license": rng.choice(("MIT", "The MIT License", "Apache License 2.0",
                                           "BSD 3-Clause", ["mit", "apache-2.0"]))}
        if rng.random() < 0.3:
            card = {}
        if rng.random() < 0.5:
            card["github"] = f"see {rng.choice(_GITHUB)} (code) and {rng.choice(_GITHUB)}"
    lic = card.get("license")
    if isinstance(lic, str):
        tags.append(f"license:{lic.lower().replace(' ', '-')}")
    tags += [f"dataset:{x}" for x in datasets] + [f"arxiv:{a}" for a in arxiv]
    tags += [x for x in lang if x != "multilingual"] + ["region:us"]
    d["tags"] = tags
    d["cardData"] = card if card else None
    d["siblings"] = sib
    d["spaces"] = [f"{owner_name(rng.randint(0, 5000))}/{rng.choice(_SYLLABLES)}-demo"
                   for _ in range(rng.randint(0, 6))]
    d["widgetData"] = card.get("widget")
    d["evalResults"] = None
    return re.sub(r"[^A-Za-z0-9._-]", "-", stem), {k: v for k, v in d.items() if v is not None}


class _Variant:
    __slots__ = ("frags", "stem", "storage", "templates")

    def __init__(self, stem: str, props: dict[str, Any], storage: int) -> None:
        self.stem = stem
        self.storage = storage
        self.frags = {k: b'"%s":%s' % (k.encode(), orjson.dumps(v)) for k, v in props.items()}
        self.templates: dict[tuple[str, ...], tuple[bytes, tuple[str, ...]]] = {}

    def template(self, keys: tuple[str, ...]) -> tuple[bytes, tuple[str, ...]]:
        """A model of this variant as one ``%`` template: its fixed fragments joined once,
        ``%s`` where a per-model (light) property goes, and the light keys in their order.
        Rendering a page is then one format per model: the mock must stay cheap beside the
        crawler it serves on the same two cores (``scripts/bench.py``)."""
        found = self.templates.get(keys)
        if found is None:
            parts = [b'"_id":"%024x"', b'"id":"%s"']
            light: list[str] = []
            for key in keys:
                frag = self.frags.get(key)
                if frag is not None:
                    parts.append(frag.replace(b"%", b"%%"))
                elif key in LIGHT_KEYS:
                    parts.append(b"%s")
                    light.append(key)
            found = self.templates[keys] = (b"{" + b",".join(parts) + b"}", tuple(light))
        return found


class _OwnerMap(Mapping[str, dict[str, Any]]):
    """``organizations`` / ``users`` of the catalogue, computed from the name on demand."""

    def __init__(self, catalogue: SyntheticCatalogue, orgs: bool) -> None:
        self.catalogue = catalogue
        self.orgs = orgs

    def __getitem__(self, name: str) -> dict[str, Any]:
        rank = self.catalogue.owner_rank(name)
        if rank is None or is_org(rank) != self.orgs:
            raise KeyError(name)
        return self.catalogue.owner_overview(rank)

    def __iter__(self) -> Iterator[str]:
        return (owner_name(r) for r in range(self.catalogue.owner_ranks)
                if is_org(r) == self.orgs)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class SyntheticCatalogue(Sequence[dict[str, Any]]):
    """N models in the Hub's list format, each a pure function of (seed, index).

    A drop-in for ``hub.hf`` (``HfCatalogue``): ``select``, ``by_id``, ``organizations``,
    ``users``, ``renames``; slices build the entries they cover and nothing else.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        if not 0 <= n <= MAX_MODELS:
            raise ValueError(f"synthetic catalogue size must be 0..{MAX_MODELS}, got {n}")
        self.n = n
        self.seed = seed
        self.trending = n // 100
        self.legacy = (n - self.trending) // 20
        self._dated = max(1, n - self.trending - self.legacy)
        self.owner_ranks = max(1, n // 2)
        self._zipf_base = (self.owner_ranks + _ZIPF_Q) / _ZIPF_Q
        self.renames: dict[str, str] = {}
        self.organizations = _OwnerMap(self, orgs=True)
        self.users = _OwnerMap(self, orgs=False)
        self._short_names = {owner_name(r): r for r in range(min(1024, self.owner_ranks))}
        weights: list[tuple[str, int]] = list(ARCHETYPES)
        self._variants: list[_Variant] = []
        for archetype, weight in weights:
            for v in range(VARIANTS_PER_ARCHETYPE):
                rng = Random(f"{seed}:{archetype}:{v}")
                stem, props = _variant(archetype, rng)
                storage = rng.randint(10_000, 40_000_000_000)
                variant = _Variant(stem, props, storage)
                self._variants.extend([variant] * weight)  # weight = copies in the pool
        self._page_cache = functools.lru_cache(maxsize=8)(self._render_page)

    # -- models --

    def owner_of(self, i: int) -> int:
        u = mix64((self.seed << 40) ^ i ^ 0xA11CE) / 18446744073709551616.0
        rank = int(_ZIPF_Q * self._zipf_base ** u - _ZIPF_Q)
        return min(rank, self.owner_ranks - 1)

    def repo_id(self, i: int) -> str:
        h = mix64((self.seed << 32) ^ i)
        variant = self._variants[h % len(self._variants)]
        return f"{owner_name(self.owner_of(i))}/{variant.stem}-{to_base36(i)}"

    def render(self, i: int, keys: Sequence[str] | None = None) -> bytes:
        """Model ``i`` as the list API writes it, with ``_id``, ``id`` and ``keys``."""
        h = mix64((self.seed << 32) ^ i)
        h2 = mix64(h)
        variant = self._variants[h % len(self._variants)]
        owner = owner_name(self.owner_of(i))
        repo = f"{owner}/{variant.stem}-{to_base36(i)}"
        uid, created_s = self.creation(i, h, h2)
        template, light_keys = variant.template(ALL_KEYS if keys is None else tuple(keys))
        if not light_keys:
            return template % (uid, repo.encode())
        light = self._light(i, h, h2, owner, variant, created_s)
        return template % (uid, repo.encode(), *[light[k] for k in light_keys])

    def creation(self, i: int, h: int, h2: int) -> tuple[int, int]:
        """Model ``i``'s ``_id`` (an ObjectId, as an int) and its creation time, the id's
        timestamp, in seconds after 2021-01-01 (a migrated repository's is the placeholder)."""
        if i < self.trending:  # recent, in no order
            ts = _RECENT_FROM + (h >> 24) % (_DATED_TO - _RECENT_FROM)
            return ts << 64 | (h2 & _M64), ts - _UNIX_2021
        j = i - self.trending
        if j < self.legacy:  # the migration took two seconds; its counter runs on
            ts = _LEGACY_TS + (2 * j >= self.legacy)
            return ts << 64 | _LEGACY_MIDDLE << 24 | (_LEGACY_COUNTER + j) & 0xFFFFFF, \
                ts - _UNIX_2021
        k = j - self.legacy
        ts = _DATED_FROM + k * (_DATED_TO - _DATED_FROM) // self._dated
        # Ids created in the same second differ by their counter, so they stay in order.
        return ts << 64 | (mix64(self.seed ^ ts // 86400) & 0xFFFFFFFFFF) << 24 | k & 0xFFFFFF, \
            ts - _UNIX_2021

    def _light(self, i: int, h: int, h2: int, owner: str, variant: _Variant,
               created_s: int) -> dict[str, bytes]:
        downloads = _DOWNLOADS[h2 & 0xFFFF]
        created_day, created_sec = divmod(created_s, 86400)
        created = _day(created_day, created_sec)
        if created_s < _DATED_FROM - _UNIX_2021:  # migrated: modified at any time since 2021
            created_day, created_sec = (h >> 20) % 1550, 0
        modified_day = min(1550, created_day + (h2 >> 20) % 400)
        modified_sec = (h2 >> 8) % 86400
        if modified_day == created_day:
            modified_sec = max(modified_sec, created_sec)
        trending = (1 + 200 * (self.trending - i) ** 3 // self.trending ** 3
                    if i < self.trending else 0)
        gated = (h2 >> 44) % 100
        return {
            "author": b'"author":"%s"' % owner.encode(),
            "createdAt": b'"createdAt":"%s"' % created.encode(),
            "disabled": b'"disabled":false',
            "downloads": b'"downloads":%d' % downloads,
            "downloadsAllTime": b'"downloadsAllTime":%d' % (downloads * (1 + (h >> 50) % 30)),
            "gated": b'"gated":' + (b"false" if gated < 93 else b'"auto"' if gated < 98
                                    else b'"manual"'),
            "lastModified": b'"lastModified":"%s"' % _day(modified_day, modified_sec).encode(),
            "likes": b'"likes":%d' % (downloads // 997 + (h2 >> 60)),
            "private": b'"private":false',
            "sha": b'"sha":"%040x"' % ((h << 96 | h2 << 32 | i) & ((1 << 160) - 1)),
            "trendingScore": b'"trendingScore":%d' % trending,
            "usedStorage": b'"usedStorage":%d' % (variant.storage + (h2 >> 30) % 100_000),
            "childrenModelCount": b'"childrenModelCount":%d' % ((h >> 56) % 5 == 0 and
                                                                (h2 >> 52) % 40),
        }

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [orjson.loads(self.render(i)) for i in range(*index.indices(self.n))]
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(index)
        return orjson.loads(self.render(index))  # type: ignore[no-any-return]

    def index_of(self, repo_id: str) -> int | None:
        _, _, tail = repo_id.rpartition("-")
        try:
            i = int(tail, 36)
        except ValueError:
            return None
        if 0 <= i < self.n and self.repo_id(i) == repo_id:
            return i
        return None

    # -- the HfCatalogue interface --

    def by_id(self, repo_id: str) -> dict[str, Any] | None:
        i = self.index_of(repo_id)
        return None if i is None else self[i]

    def select(self, req: MockRequest) -> SyntheticCatalogue:
        used = [p for p in FILTER_PARAMS if req.arg(p)]
        if used:
            raise SyntheticUnsupported(
                f"the synthetic catalogue pages the whole hub only; unsupported: {', '.join(used)}")
        return self

    def page(self, offset: int, limit: int, expand: Sequence[str]) -> bytes:
        """One list page's body; the last few pages are cached for retries and repeats."""
        return self._page_cache(offset, limit, tuple(expand))  # type: ignore[no-any-return]

    def _render_page(self, offset: int, limit: int, expand: tuple[str, ...]) -> bytes:
        keys = expand or LIST_DEFAULT
        stop = min(offset + limit, self.n)
        return b"[" + b",".join(self.render(i, keys) for i in range(offset, stop)) + b"]"

    # -- owners --

    def owner_rank(self, name: str) -> int | None:
        rank = self._short_names.get(name)
        if rank is None:
            m = re.search(r"(\d+)$", name)
            if m is None or m.group(1).startswith("0"):
                return None
            rank = int(m.group(1))
        return rank if rank < self.owner_ranks and owner_name(rank) == name else None

    def expected_models(self, rank: int) -> int:
        """About how many models the owner has (what ``numModels`` reports)."""
        share = 1.0 / ((rank + _ZIPF_Q) * math.log(self._zipf_base))
        return max(1, round(self.n * share))

    def owner_overview(self, rank: int) -> dict[str, Any]:
        name = owner_name(rank)
        h = mix64(rank ^ 0x0E7E5)
        if is_org(rank):
            plan = _ORG_PLANS[h % len(_ORG_PLANS)]
            org: dict[str, Any] = {
                **_org_card(rank),
                "isVerified": rank < 200 and h % 3 == 0, "isFollowing": False,
                "numModels": self.expected_models(rank), "numSpaces": h % 50,
                "numDatasets": (h >> 8) % 30, "numFollowers": (h >> 16) % 5000,
                "numUsers": 1 + (h >> 32) % 120, "isEnterprise": plan == "enterprise",
            }
            if plan:
                org["plan"] = plan
            return org
        return {
            "_id": f"{h:016x}{rank:08x}", "type": "user", "name": name,
            "fullname": name.capitalize(), "isPro": h % 20 == 0,
            "avatarUrl": f"/avatars/{h:016x}{rank:016x}.svg",
            "numModels": self.expected_models(rank),
            "numDatasets": (h >> 8) % 5, "numSpaces": (h >> 12) % 4, "numDiscussions": h % 9,
            "numPapers": 0, "numUpvotes": (h >> 20) % 30, "numLikes": (h >> 24) % 80,
            "numFollowers": (h >> 28) % 40, "numFollowing": (h >> 32) % 40,
            "isFollowing": False, "createdAt": _day((h >> 40) % 1500),
            "orgs": [_org_card(r) for r in self.memberships(rank)],
        }

    def memberships(self, rank: int) -> list[int]:
        """Organisation ranks a user belongs to (the overview's ``orgs``). An assumption, not
        a Hub statistic: 30% of users are members of 1-3 organisations, drawn by the owners' own
        law (an organisation's members in proportion to its models), so the big publishers'
        names show up in many overviews and most long-tail organisations' in none."""
        h = mix64(rank ^ 0x0E665)
        if h % 100 >= 30:
            return []
        found: list[int] = []
        for j in range(1 + (h >> 8) % 3):
            u = mix64(h ^ (j + 1)) / 18446744073709551616.0
            r = min(int(_ZIPF_Q * self._zipf_base ** u - _ZIPF_Q), self.owner_ranks - 1)
            for candidate in range(r, min(r + 64, self.owner_ranks)):
                if is_org(candidate):
                    if candidate not in found:
                        found.append(candidate)
                    break
        return found


_EPOCH = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
# Popularity is heavy-tailed: most models are not downloaded in a month, the others follow a
# Pareto law (alpha 0.6): half of them under 4, one in 60 over 1,000, ~100 models in a million
# over 1,000,000. An assumption, like the owners' law. Until 2026-11-26 the cube of a uniform
# draw gave a median of ~500 and at most 4,095, unlike the comment it came with ("most models
# have a handful of downloads") and unlike the Hub.
_DOWNLOADS = tuple(0 if k < 36045 else int((1 - (k - 36045) / 29491) ** (-1 / 0.6))
                   for k in range(65536))
_UNIX_2021 = 1_609_459_200
_LEGACY_TS = 0x621FFDC0  # 2022-03-02T23:29:04Z
_LEGACY_MIDDLE = 0x36468D709F  # the migration's process, as in the recorded ids
_LEGACY_COUNTER = 0x174338
_DATED_FROM = 1_646_265_600  # 2022-03-03T00:00:00Z
_DATED_TO = _UNIX_2021 + 1550 * 86400  # 2025-03-31
_RECENT_FROM = _DATED_TO - 180 * 86400


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> str:
    return (_EPOCH + dt.timedelta(days=day)).strftime("%Y-%m-%dT")


def _day(day: int, seconds: int = 0) -> str:
    """``2021-01-01`` plus ``day`` days and ``seconds``, in the Hub's millisecond format."""
    days, seconds = divmod(seconds, 86400)
    return (f"{_date(day + days)}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:"
            f"{seconds % 60:02d}.000Z")


# --- serving --------------------------------------------------------------------------------

KINDS = ("list", "detail", "org", "user", "other")


def request_kind(path: str) -> str:
    if path == "/api/models":
        return "list"
    if path.startswith("/api/models/"):
        return "detail"
    if path.startswith("/api/organizations/"):
        return "org"
    if path.startswith("/api/users/"):
        return "user"
    return "other"


def list_models(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    """``GET /api/models`` over the synthetic catalogue: pre-rendered bytes, cursor paging."""
    catalogue: SyntheticCatalogue = hub.hf  # type: ignore[attr-defined]
    from tests.mockhub.huggingface import bad_expand

    expand = req.args("expand")
    error = bad_expand(expand)
    if error:
        return error
    try:
        catalogue.select(req)
    except SyntheticUnsupported as exc:
        return MockResponse.json({"error": str(exc)}, status=400)
    try:
        limit = min(int(req.arg("limit") or PAGE_SIZE), PAGE_SIZE)
        offset = decode_cursor(req.arg("cursor") or "") if req.arg("cursor") else 0
    except (ValueError, KeyError):
        return MockResponse.json({"error": "Invalid cursor or limit"}, status=400)
    if limit < 1 or offset < 0:
        return MockResponse.json({"error": "Invalid cursor or limit"}, status=400)
    body = catalogue.page(offset, limit, expand)
    headers: list[tuple[str, str]] = []
    if offset + limit < catalogue.n:
        query = re.sub(r"(^|&)cursor=[^&]*", "", req.raw_target.partition("?")[2]).lstrip("&")
        cursor = encode_cursor(offset + limit)
        sep = "&" if query else ""
        headers.append(("Link", f'<{hub.base_url(req)}/api/models?{query}{sep}cursor={cursor}>; '
                                'rel="next"'))
    return MockResponse(body=body, headers=headers)


class Counts:
    """Requests per kind, for the benchmark (``GET /_mock/counts``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_kind: collections.Counter[str] = collections.Counter()

    def hook(self, hub: MockHub, req: MockRequest) -> MockResponse | None:
        if req.path == "/_mock/counts":
            with self.lock:
                return MockResponse(body=orjson.dumps(dict(self.by_kind)))
        with self.lock:
            self.by_kind[request_kind(req.path)] += 1
        return None


def enable(hub: MockHub, n: int, seed: int = 0, log_size: int = 1000) -> SyntheticCatalogue:
    """Serve ``n`` synthetic models from ``hub`` (before it starts or while it runs).

    The request log keeps only the last ``log_size`` entries: at hub scale it would otherwise
    hold every request. Per-kind counts are at ``GET /_mock/counts``.
    """
    catalogue = SyntheticCatalogue(n, seed=seed)
    hub.hf = catalogue  # type: ignore[attr-defined]
    hub.log = collections.deque(hub.log, maxlen=log_size)  # type: ignore[assignment]
    counts = Counts()
    hub.synthetic_counts = counts  # type: ignore[attr-defined]
    hub.before.insert(0, counts.hook)
    hub.routes.insert(0, ("GET", re.compile(r"/api/models"), list_models))
    return catalogue
