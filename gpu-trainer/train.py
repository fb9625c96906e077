"""EDITABLE: a small byte-level GPT trained for a fixed budget (the ratchet loop edits this).

Reads  $AUTOAGENT_DATA_DIR/train.bin (uint8 bytes), $AUTOAGENT_SEED, and the budget: $AUTOAGENT_STEPS (exactly that
       many optimizer steps), else $AUTOAGENT_TOKENS (exactly ceil(tokens / (BATCH_SIZE * BLOCK_SIZE)) steps), else
       $AUTOAGENT_TIME_BUDGET (seconds of wall clock).
Writes $AUTOAGENT_OUTPUT_DIR/{model.pt (TorchScript: idx[B,T<=BLOCK_SIZE] -> logits[B,T,256]),
       model_meta.json, telemetry.json}. The locked prepare.py scores model.pt; nothing printed here is trusted.
"""
import json, math, os, random, resource, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- hyperparameters (one per line: NAME = literal  # comment) ----
N_LAYER = 2  # transformer blocks
N_HEAD = 4  # attention heads per block
N_EMBD = 64  # model width
BLOCK_SIZE = 64  # context length in bytes
BATCH_SIZE = 8  # sequences per step
LEARNING_RATE = 6e-4  # peak AdamW learning rate (nanoGPT's GPT-2 setting)
MIN_LR_FRAC = 0.1  # final learning rate as a fraction of the peak
WARMUP_FRAC = 0.05  # fraction of the budget (steps or seconds) spent warming up linearly
WEIGHT_DECAY = 0.1  # AdamW weight decay on matrices
BETA1 = 0.9  # AdamW beta1
BETA2 = 0.99  # AdamW beta2
GRAD_CLIP = 1.0  # max gradient norm (0 disables)
DROPOUT = 0.0  # dropout probability in training
USE_BIAS = False  # bias terms in the linear layers
TIE_WEIGHTS = True  # share the input embedding and the output projection
COMPILE = True  # torch.compile on CUDA when available

VOCAB_SIZE = 2**8  # bytes: fixed by the locked prepare.py, not a hyperparameter (hence no plain literal)


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"train.py: set {name} (the autoagent loop sets AUTOAGENT_DATA_DIR, AUTOAGENT_TIME_BUDGET or "
                 "AUTOAGENT_STEPS or AUTOAGENT_TOKENS, AUTOAGENT_SEED, AUTOAGENT_OUTPUT_DIR)")
    return value


DATA_DIR = env("AUTOAGENT_DATA_DIR")
TIME_BUDGET = float(env("AUTOAGENT_TIME_BUDGET", "20"))
if os.environ.get("AUTOAGENT_STEPS"):  # a deterministic budget: the same work whatever the machine's load
    TOTAL_STEPS, BUDGET = int(env("AUTOAGENT_STEPS")), f"{env('AUTOAGENT_STEPS')} steps"
elif os.environ.get("AUTOAGENT_TOKENS"):
    TOTAL_STEPS = -(-int(env("AUTOAGENT_TOKENS")) // (BATCH_SIZE * BLOCK_SIZE))
    BUDGET = f"{env('AUTOAGENT_TOKENS')} tokens = {TOTAL_STEPS} steps"
else:
    TOTAL_STEPS, BUDGET = None, f"{TIME_BUDGET:g}s"
if TOTAL_STEPS is not None and TOTAL_STEPS < 1:
    sys.exit(f"train.py: the budget ({BUDGET}) must allow at least one step")
SEED = int(env("AUTOAGENT_SEED", "0"))
OUT_DIR = env("AUTOAGENT_OUTPUT_DIR", ".")

random.seed(SEED); np.random.seed(SEED); torch.manual_seed(SEED)
DEVICE = os.environ.get("AUTOAGENT_DEVICE", "auto")  # auto | cpu | cuda (the loop sets it)
DEVICE = ("cuda" if torch.cuda.is_available() else "cpu") if DEVICE == "auto" else DEVICE
SDPA = hasattr(F, "scaled_dot_product_attention")
if DEVICE == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(N_EMBD), nn.LayerNorm(N_EMBD)
        self.qkv = nn.Linear(N_EMBD, 3 * N_EMBD, bias=USE_BIAS)
        self.proj = nn.Linear(N_EMBD, N_EMBD, bias=USE_BIAS)
        self.fc = nn.Linear(N_EMBD, 4 * N_EMBD, bias=USE_BIAS)
        self.fc_out = nn.Linear(4 * N_EMBD, N_EMBD, bias=USE_BIAS)
        self.drop = nn.Dropout(DROPOUT)
        self.register_buffer("mask", torch.tril(torch.ones(BLOCK_SIZE, BLOCK_SIZE, dtype=torch.bool)), persistent=False)

    def attn(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, N_HEAD, N_EMBD // N_HEAD).permute(2, 0, 3, 1, 4).unbind(0)
        if SDPA:  # fused kernels (flash attention on CUDA)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=DROPOUT if self.training else 0.0)
        else:  # manual causal attention; the mask is sliced by T so the traced export accepts any T <= BLOCK_SIZE
            att = (q @ k.transpose(-2, -1)) / math.sqrt(N_EMBD // N_HEAD)
            att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
            y = self.drop(F.softmax(att, dim=-1)) @ v
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.drop(self.fc_out(F.gelu(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB_SIZE, N_EMBD)
        self.wpe = nn.Embedding(BLOCK_SIZE, N_EMBD)
        self.blocks = nn.ModuleList([Block() for _ in range(N_LAYER)])
        self.ln_f = nn.LayerNorm(N_EMBD)
        self.head = nn.Linear(N_EMBD, VOCAB_SIZE, bias=False)
        if TIE_WEIGHTS:
            self.head.weight = self.wte.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith(("proj.weight", "fc_out.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * N_LAYER))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx):  # idx [B, T] int64 -> logits [B, T, 256]
        T = idx.size(1)
        x = self.wte(idx) + self.wpe.weight[:T]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


data = np.memmap(os.path.join(DATA_DIR, "train.bin"), dtype=np.uint8, mode="r")
if len(data) <= BLOCK_SIZE + 1:
    sys.exit(f"train.py: {DATA_DIR}/train.bin has {len(data)} bytes, need more than BLOCK_SIZE + 1")
rng = np.random.default_rng(SEED)


def get_batch():
    ix = rng.integers(0, len(data) - BLOCK_SIZE - 1, BATCH_SIZE)
    buf = torch.from_numpy(np.stack([data[i:i + BLOCK_SIZE + 1] for i in ix]).astype(np.int64))
    if DEVICE == "cuda":
        buf = buf.pin_memory().to(DEVICE, non_blocking=True)
    return buf[:, :-1], buf[:, 1:]


model = GPT().to(DEVICE)
n_params = sum(p.numel() for p in model.parameters())
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
fused = {"fused": True} if DEVICE == "cuda" and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(BETA1, BETA2), **fused)
train_model = torch.compile(model) if DEVICE == "cuda" and COMPILE and hasattr(torch, "compile") else model
autocast = torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=DEVICE == "cuda")
print(f"device {DEVICE} | torch {torch.__version__} | {n_params / 1e6:.2f}M params | sdpa {SDPA} | "
      f"compiled {train_model is not model} | budget {BUDGET}", flush=True)


def lr_at(progress):  # progress = step / steps (or elapsed / seconds) in [0, 1]
    if progress < WARMUP_FRAC:
        return LEARNING_RATE * min(1.0, (progress + 1e-3) / WARMUP_FRAC)
    decay_progress = min(1.0, (progress - WARMUP_FRAC) / max(1e-9, 1 - WARMUP_FRAC))
    return LEARNING_RATE * (MIN_LR_FRAC + (1 - MIN_LR_FRAC) * 0.5 * (1 + math.cos(math.pi * decay_progress)))


def train_step(lr):
    for g in optimizer.param_groups:
        g["lr"] = lr
    x, y = get_batch()
    with autocast:
        logits = train_model(x)
    loss = F.cross_entropy(logits.float().view(-1, VOCAB_SIZE), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if GRAD_CLIP > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    return loss.item()  # also synchronizes CUDA, so the clock below is honest


def progress(step, elapsed):
    return step / TOTAL_STEPS if TOTAL_STEPS else elapsed / TIME_BUDGET


model.train()
try:
    first_loss = train_step(lr_at(0.0))  # also warms up / compiles: not timed (counted only in a steps budget)
except Exception as e:  # torch.compile can fail on some setups: fall back to eager mode
    if train_model is model:
        raise
    print(f"torch.compile failed ({type(e).__name__}: {e}); training in eager mode", file=sys.stderr)
    train_model = model
    first_loss = train_step(lr_at(0.0))
if DEVICE == "cuda":
    torch.cuda.reset_peak_memory_stats()
history, step, elapsed, next_print = [], 0, 0.0, 0.0
if TOTAL_STEPS:
    step = 1
    history.append((1, 0.0, first_loss))
t0 = time.time()
while step < TOTAL_STEPS if TOTAL_STEPS else elapsed < TIME_BUDGET:
    lr = lr_at(progress(step, elapsed))
    loss = train_step(lr)
    step += 1
    elapsed = time.time() - t0
    if not math.isfinite(loss):
        sys.exit(f"train.py: loss is {loss} at step {step}; lower LEARNING_RATE?")
    history.append((step, elapsed, loss))
    if progress(step, elapsed) >= next_print:
        next_print += 1 / 20
        print(f"step {step} | loss {loss:.3f} | lr {lr:.1e} | {step * BATCH_SIZE * BLOCK_SIZE / elapsed / 1e3:.1f}k tok/s", flush=True)
elapsed = max(elapsed, 1e-9)

# ---- telemetry: average the per-step losses into at most 200 points ----
tokens = step * BATCH_SIZE * BLOCK_SIZE
buckets = np.array_split(np.arange(len(history)), min(200, len(history)))
curve = [[history[b[-1]][0], round(history[b[-1]][1], 3), round(float(np.mean([history[i][2] for i in b])), 4)] for b in buckets]
tail = [h[2] for h in history[-max(1, len(history) // 10):]]
peak_flops = next((f for k, f in [("H100", 989e12), ("H200", 989e12), ("A100", 312e12)]
                   if DEVICE == "cuda" and k in torch.cuda.get_device_name()), None)
telemetry = {
    "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
    "torch_version": torch.__version__, "budget": BUDGET, "steps": step, "tokens": tokens, "train_seconds": round(elapsed, 3),
    "tokens_per_s": tokens / elapsed, "steps_per_s": step / elapsed,
    "peak_mem_mb": (torch.cuda.max_memory_allocated() if DEVICE == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20,
    "mfu": 6 * n_params * tokens / elapsed / peak_flops if peak_flops else None,
    "loss_curve": curve, "final_train_loss": float(np.mean(tail)),
}

# ---- export: trace the uncompiled model, float32 on CPU, eval mode (dropout off) ----
model = model.float().cpu().eval()
example = torch.randint(0, VOCAB_SIZE, (2, BLOCK_SIZE))
with torch.no_grad():
    traced = torch.jit.trace(model, example)
    short = example[:, : max(1, BLOCK_SIZE // 3)]
    assert torch.allclose(traced(short), model(short), atol=1e-5), "export does not handle T < BLOCK_SIZE"
os.makedirs(OUT_DIR, exist_ok=True)
traced.save(os.path.join(OUT_DIR, "model.pt"))
with open(os.path.join(OUT_DIR, "model_meta.json"), "w") as f:
    json.dump({"block_size": BLOCK_SIZE, "vocab_size": VOCAB_SIZE, "n_params": n_params}, f)
with open(os.path.join(OUT_DIR, "telemetry.json"), "w") as f:
    json.dump(telemetry, f)
print(f"done: {step} steps, {tokens / elapsed / 1e3:.1f}k tok/s, final train loss {telemetry['final_train_loss']:.3f} "
      f"({telemetry['final_train_loss'] / math.log(2):.3f} bits/byte)", flush=True)
