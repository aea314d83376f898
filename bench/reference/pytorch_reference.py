#!/usr/bin/python3
"""The reference for ftd's fine-tuning benchmark: the same job in plain PyTorch.

Fine-tunes a Hugging Face BERT checkpoint (safetensors) as a sequence
classifier, computed the way transformers computes BertForSequenceClassification,
with the same recipe as ftd: AdamW (no decay on biases and LayerNorm), linear
warm-up/decay, gradient clipping at 1.0, batches padded to their longest row,
evaluation after each epoch. Uses only Debian's python3-torch and numpy
(transformers is not packaged), so the tokenizer below is BertTokenizer's
algorithm written out.

--precision bf16 runs the forward pass and the loss (training and
evaluation) under CPU autocast in bf16, with fp32 master weights and
optimizer state; every LayerNorm gets an fp32 input (the residual sums are
fp32). --threads auto and --precision auto time a few steps of each
(threads, precision) pair on copies of the model and train with the fastest;
a pair whose step is already 3x slower than the best pair's mean is cut short,
and one that would stay 3x slower even scaling perfectly from fewer threads is
skipped (bf16 without bf16 units is many times slower). The JSON reports the threads,
the precision, the calibration per pair ("1 fp32": ms per step) and the core
OpenBLAS runs ("blas_core", from openblas_get_corename; OPENBLAS_CORETYPE
chooses it).

    /usr/bin/python3 bench/reference/pytorch_reference.py --model DIR --train CSV \
        --validation CSV --epochs 3 --batch-size 32 --lr 1e-4 --max-length 48 \
        --threads auto --precision auto --evaluations-per-epoch 5 --json out.json
"""
import argparse
import contextlib
import copy
import csv
import ctypes
import json
import math
import os
import random
import struct
import time
import unicodedata

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- tokenizer
def _is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    def __init__(self, vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        self.cls, self.sep, self.unk, self.pad = (self.vocab[t] for t in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"))

    def _words(self, text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        words = []
        for token in "".join(out).lower().split():
            token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
            current = ""
            for ch in token:
                if _is_punct(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def encode(self, text, max_length):
        ids = [self.cls]
        for word in self._words(text):
            if len(word) > 100:
                ids.append(self.unk)
                continue
            pieces, start = [], 0
            while start < len(word):
                end = len(word)
                found = None
                while start < end:
                    piece = ("##" if start else "") + word[start:end]
                    if piece in self.vocab:
                        found = self.vocab[piece]
                        break
                    end -= 1
                if found is None:
                    pieces = [self.unk]
                    break
                pieces.append(found)
                start = end
            ids.extend(pieces)
        ids = ids[: max_length - 1]
        return ids + [self.sep]


# ---------------------------------------------------------------- weights
def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        if info["dtype"] == "BF16":
            raw = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype=dtypes[info["dtype"]])
        out[name] = torch.from_numpy(arr.copy()).reshape(info["shape"]).float()
    return out


def load_checkpoint(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for f in files:
        weights.update(read_safetensors(os.path.join(model_dir, f)))
    return weights


# ---------------------------------------------------------------- model
class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.q, self.k, self.v = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.o = nn.Linear(h, h)
        self.ln1 = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.up = nn.Linear(h, c["intermediate_size"])
        self.down = nn.Linear(c["intermediate_size"], h)
        self.ln2 = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.drop = nn.Dropout(c["hidden_dropout_prob"])
        self.attn_drop = nn.Dropout(c["attention_probs_dropout_prob"])

    def forward(self, x, bias):
        b, s, h = x.shape
        d = h // self.heads
        split = lambda t: t.view(b, s, self.heads, d).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        probs = self.attn_drop(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, -1))
        ctx = (probs @ v).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(self.drop(self.o(ctx)) + x)
        return self.ln2(self.drop(self.down(F.gelu(self.up(x)))) + x)


class Classifier(nn.Module):
    def __init__(self, c, labels):
        super().__init__()
        h = c["hidden_size"]
        self.word = nn.Embedding(c["vocab_size"], h, padding_idx=c.get("pad_token_id", 0))
        self.pos = nn.Embedding(c["max_position_embeddings"], h)
        self.tok_type = nn.Embedding(c.get("type_vocab_size", 2), h)
        self.ln = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.drop = nn.Dropout(c["hidden_dropout_prob"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.pool = nn.Linear(h, h)
        self.cls_drop = nn.Dropout(c.get("classifier_dropout") or c["hidden_dropout_prob"])
        self.classifier = nn.Linear(h, labels)
        for m in (self.pool, self.classifier):
            nn.init.normal_(m.weight, std=c["initializer_range"])
            nn.init.zeros_(m.bias)

    def load(self, w):
        p = "bert."
        with torch.no_grad():
            self.word.weight.copy_(w[p + "embeddings.word_embeddings.weight"])
            self.pos.weight.copy_(w[p + "embeddings.position_embeddings.weight"])
            self.tok_type.weight.copy_(w[p + "embeddings.token_type_embeddings.weight"])
            self.ln.weight.copy_(w[p + "embeddings.LayerNorm.weight"])
            self.ln.bias.copy_(w[p + "embeddings.LayerNorm.bias"])
            for i, layer in enumerate(self.layers):
                q = f"{p}encoder.layer.{i}."
                for mod, name in ((layer.q, "attention.self.query"), (layer.k, "attention.self.key"),
                                  (layer.v, "attention.self.value"), (layer.o, "attention.output.dense"),
                                  (layer.up, "intermediate.dense"), (layer.down, "output.dense"),
                                  (layer.ln1, "attention.output.LayerNorm"), (layer.ln2, "output.LayerNorm")):
                    mod.weight.copy_(w[q + name + ".weight"])
                    mod.bias.copy_(w[q + name + ".bias"])

    def forward(self, ids, mask):
        s = ids.shape[1]
        x = self.word(ids) + self.pos(torch.arange(s).unsqueeze(0)) + self.tok_type.weight[0]
        x = self.drop(self.ln(x))
        bias = ((1.0 - mask.float()) * torch.finfo(torch.float32).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        return self.classifier(self.cls_drop(torch.tanh(self.pool(x[:, 0]))))


# ---------------------------------------------------------------- host
def blas_core():
    """The core (kernels) the loaded OpenBLAS runs, e.g. "Zen" or "Haswell";
    None where torch runs no OpenBLAS (or it cannot tell)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "libopenblas" in line and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            get = ctypes.CDLL(path).openblas_get_corename
        except (OSError, AttributeError):
            continue
        get.restype = ctypes.c_char_p
        name = get()
        return name.decode().strip() if name else None
    return None


def precision_context(precision):
    """bf16: CPU autocast (matrix products in bf16, weights and optimizer in fp32)."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------- training
def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def batch(ids, rows, pad):
    longest = max(len(ids[r]) for r in rows)
    x = torch.full((len(rows), longest), pad, dtype=torch.long)
    m = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(ids[r])] = torch.tensor(ids[r])
        m[i, : len(ids[r])] = 1
    return x, m


def evaluate(model, ids, labels, bs, pad, precision="fp32"):
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    correct, loss = 0, 0.0
    with torch.no_grad():
        for s in range(0, len(order), bs):
            rows = order[s : s + bs]
            x, m = batch(ids, rows, pad)
            y = torch.tensor([labels[r] for r in rows])
            with precision_context(precision):
                logits = model(x, m)
                loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    return loss / len(ids), correct / len(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--validation", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", default="1",
                    help="LibTorch intra-op threads, or 'auto': time a few steps with each of "
                         "1..cores on a copy of the model and train with the fastest")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                    help="bf16: forward pass and loss under CPU autocast (fp32 master weights and "
                         "optimizer), evaluation too; auto: the faster of the two, timed with the threads")
    ap.add_argument("--evaluations-per-epoch", type=int, default=1,
                    help="validation runs an epoch, evenly spaced in steps (as ftd's)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    config = json.load(open(os.path.join(args.model, "config.json")))
    tok = WordPiece(os.path.join(args.model, "vocab.txt"))
    texts, train_labels = read_csv(args.train)
    vtexts, vlabels = read_csv(args.validation)
    names = sorted(set(train_labels))
    label_id = {n: i for i, n in enumerate(names)}
    ids = [tok.encode(t, args.max_length) for t in texts]
    y = [label_id[l] for l in train_labels]
    vids = [tok.encode(t, args.max_length) for t in vtexts]
    vy = [label_id[l] for l in vlabels]

    model = Classifier(config, len(names))
    model.load(load_checkpoint(args.model))
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "ln" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "ln" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, eps=1e-8)
    steps_per_epoch = math.ceil(len(ids) / args.batch_size)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (total - s) / total))

    def train_step(model, opt, rows, precision):
        x, m = batch(ids, rows, tok.pad)
        target = torch.tensor([y[r] for r in rows])
        with precision_context(precision):
            loss = F.cross_entropy(model(x, m).float(), target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    thread_choices = (list(range(1, (os.cpu_count() or 1) + 1)) if args.threads == "auto"
                      else [int(args.threads)])
    precision_choices = ["fp32", "bf16"] if args.precision == "auto" else [args.precision]
    calibration, cut_short, skipped = {}, [], []
    if len(thread_choices) * len(precision_choices) > 1:
        # On copies, so that training itself starts from the same state, and
        # with the RNG put back (dropout draws from it): a pair cut short
        # draws less, and training must not depend on that.
        rng_state = torch.get_rng_state()
        probe = random.Random(1234)
        warm_up, timed = 2, 8
        best = None  # the best mean seconds a step of a pair timed in full
        for precision in precision_choices:
            for threads in thread_choices:
                key = f"{threads} {precision}"
                # Even scaling perfectly from fewer threads, would it come within 3x of the best?
                fewer = [t * calibration[f"{t} {precision}"] / threads for t in thread_choices
                         if t < threads and f"{t} {precision}" in calibration]
                if best is not None and fewer and min(fewer) > 3 * best:
                    skipped.append(key)
                    continue
                torch.set_num_threads(threads)
                m2 = copy.deepcopy(model)
                o2 = torch.optim.AdamW(m2.parameters(), lr=args.lr, eps=1e-8)
                m2.train()
                batches = [probe.sample(range(len(ids)), args.batch_size) for _ in range(warm_up + timed)]
                times = []
                for rows in batches:
                    start = time.perf_counter()
                    train_step(m2, o2, rows, precision)
                    times.append(time.perf_counter() - start)
                    if best is not None and times[-1] > 3 * best:
                        break  # far slower than the best pair: not worth timing in full
                if len(times) < len(batches):
                    cut_short.append(key)
                    calibration[key] = sum(times) / len(times)
                else:
                    calibration[key] = sum(times[warm_up:]) / timed
                    best = calibration[key] if best is None else min(best, calibration[key])
                del m2, o2
        torch.set_rng_state(rng_state)
        key = min((k for k in calibration if k not in cut_short), key=calibration.get)
        threads, precision = int(key.split()[0]), key.split()[1]
        print("pytorch threads and precision: " +
              ", ".join(f"{k}: {1000 * v:.0f} ms/step" + (" (cut short)" if k in cut_short else "")
                        for k, v in calibration.items()) +
              "".join(f", {k}: skipped" for k in skipped) + f"; training with {key}", flush=True)
    else:
        threads, precision = thread_choices[0], precision_choices[0]
    torch.set_num_threads(threads)
    core = blas_core()
    print(f"pytorch: OpenBLAS core {core}, {threads} thread(s), {precision}", flush=True)

    evals_at = sorted({max(1, (k * steps_per_epoch) // args.evaluations_per_epoch)
                       for k in range(1, args.evaluations_per_epoch + 1)})
    rng = random.Random(args.seed)
    epochs, evaluations = [], []
    train_seconds = 0.0
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = list(range(len(ids)))
        rng.shuffle(order)
        epoch_seconds, eval_seconds = 0.0, 0.0
        start = time.perf_counter()
        loss_sum = 0.0
        for b, s in enumerate(range(0, len(order), args.batch_size)):
            rows = order[s : s + args.batch_size]
            loss_sum += train_step(model, opt, rows, precision) * len(rows)
            sched.step()
            step += 1
            if b + 1 in evals_at:
                epoch_seconds += time.perf_counter() - start
                eval_start = time.perf_counter()
                vloss, vacc = evaluate(model, vids, vy, args.batch_size, tok.pad, precision)
                eval_seconds += time.perf_counter() - eval_start
                evaluations.append({"epoch": epoch, "step": step, "train_seconds": train_seconds + epoch_seconds,
                                    "accuracy": vacc, "loss": vloss})
                model.train()
                start = time.perf_counter()
        epoch_seconds += time.perf_counter() - start
        train_seconds += epoch_seconds
        epochs.append({"epoch": epoch, "seconds": epoch_seconds, "samples_per_second": len(ids) / epoch_seconds,
                       "eval_seconds": eval_seconds,
                       "train_loss": loss_sum / len(ids), "validation_loss": evaluations[-1]["loss"],
                       "validation_accuracy": evaluations[-1]["accuracy"]})
        print(f"pytorch epoch {epoch}: {epoch_seconds:.1f} s, {len(ids) / epoch_seconds:.1f} samples/s, "
              f"train loss {loss_sum / len(ids):.4f}, validation accuracy {evaluations[-1]['accuracy']:.4f}",
              flush=True)
    if args.json:
        json.dump({"threads": threads, "precision": precision, "blas_core": core,
                   "calibration_ms_per_step": {k: 1000 * v for k, v in calibration.items()},
                   "calibration_cut_short": cut_short, "calibration_skipped": skipped,
                   "epochs": epochs, "evaluations": evaluations}, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
