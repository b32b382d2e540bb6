"""char-gpt: nanoGPT's ``shakespeare_char``, scaled to a 2-core CPU, every step synced.

The model is nanoGPT's ``GPT`` (compare/cases/_nanogpt.py, its ``model.py``) at 2 layers,
4 heads, 64 dimensions, a block of 64 characters, dropout 0.1, no biases, the token
embedding tied to the head; trained as its ``train.py`` trains it: ``configure_optimizers``'
AdamW (betas 0.9, 0.99; weight decay 0.1 on the parameters of two or more dimensions, none
on the LayerNorms), the rate ``get_lr(it)`` (linear warmup, then cosine to ``min_lr``) set
through ``LambdaLR``, ``clip_grad_norm_(model.parameters(), 1.0)`` between ``backward`` and
``step``, batches of 16 random windows (``get_batch``). The JAX port is ``fg.layers.gpt_apply``
with ``fg.optim.param_groups(fg.optim.adamw, ...)`` behind ``fg.optim.clip_grad_norm`` and
``fg.optim.lambda_lr`` of the same ``get_lr``.

Both sides read the same windows and drop the same units: each step's batch carries its
dropout key, and the torch model's ``nn.Dropout`` modules replay funcgrad's masks (the
manual attention path, so the attention weights' dropout is a module too). Every step is
judged from torch's exact state (``fg.compare_steps`` with ``torch_after_backward=`` the
clip); then the whole runs; then the trained models: the validation loss (eval mode, fixed
windows of the last 10 %) and a greedy continuation of ``PROMPT``, torch's, with each
model's logits along it compared token by token (a token may differ only at a near-tie of
its two best logits, the margin reported).

The text is ``--text FILE`` or ``$FUNCGRAD_TEXT`` (tinyshakespeare's ``input.txt``), else the
cache ``--download`` fills, else the excerpt shipped with funcgrad (its first 49 980
characters), which the report names.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import funcgrad as fg
from compare.cases import _nanogpt as nanogpt
from compare.timed import TORCH_COMPILE, Timed, torch_compiled
from funcgrad.layers.gpt import GPTConfig, gpt_apply, gpt_init, gpt_to_state_dict

NAME = "char-gpt"
SOURCE = "beyond the seeds: nanoGPT's shakespeare_char (scaled), every step synced"
READS_TEXT = True
BLOCK_SIZE, N_LAYER, N_HEAD, N_EMBD, DROPOUT, BIAS = 64, 2, 4, 64, 0.1, False
BATCH_SIZE = 16
MAX_ITERS = 300  # every step synced, both dtypes
LEARNING_RATE, MIN_LR, WARMUP_ITERS, LR_DECAY_ITERS = 1e-3, 1e-4, 30, MAX_ITERS
BETAS, WEIGHT_DECAY, GRAD_CLIP = (0.9, 0.99), 0.1, 1.0
TEST_STEPS = 8  # what the test suite runs (Context.max_steps); the CLI runs MAX_ITERS
EVAL_BATCHES = 4  # validation windows: EVAL_BATCHES batches of BATCH_SIZE
PROMPT, CONTINUATION = "\n", 100  # sample.py's start, greedy


def get_lr(it: int) -> float:
    """train.py's ``get_lr``: linear warmup for ``WARMUP_ITERS``, cosine decay to ``MIN_LR``."""
    if it < WARMUP_ITERS:
        return LEARNING_RATE * (it + 1) / (WARMUP_ITERS + 1)
    if it > LR_DECAY_ITERS:
        return MIN_LR
    decay_ratio = (it - WARMUP_ITERS) / (LR_DECAY_ITERS - WARMUP_ITERS)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return MIN_LR + coeff * (LEARNING_RATE - MIN_LR)


def lr_multiplier(it: int) -> float:
    return get_lr(it) / LEARNING_RATE


def config(vocab_size: int) -> GPTConfig:
    return GPTConfig(block_size=BLOCK_SIZE, vocab_size=vocab_size, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD,
                     dropout=DROPOUT, bias=BIAS)


def corpus(ctx) -> tuple[str, str, np.ndarray, np.ndarray]:
    """``(data name, vocabulary, train ids, validation ids)``."""
    data_name, text = ctx.text()
    return (data_name, *_tokens(text))


@functools.lru_cache(maxsize=1)
def _tokens(text: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The vocabulary and the split ids, encoded once a text (the run and each evaluation read them)."""
    vocabulary = fg.char_vocabulary(text)
    train, val = fg.split_train_val(fg.encode(text, vocabulary))
    for ids in (train, val):
        ids.setflags(write=False)
    return vocabulary, train, val


def data_name(ctx) -> str:
    """What the report names as this case's text: the file, or the shipped excerpt."""
    return ctx.text()[0]


def jax_optimizer(num_steps: int) -> optax.GradientTransformation:
    """train.py's optimizer in fg.optim: the clip first (as torch clips the gradients), then
    AdamW over configure_optimizers' two groups, the rate looked up from get_lr."""
    rate = fg.optim.lambda_lr(LEARNING_RATE, lr_multiplier, num_steps=num_steps)
    groups = [{"params": lambda name, p: p.ndim >= 2, "weight_decay": WEIGHT_DECAY},
              {"params": lambda name, p: p.ndim < 2, "weight_decay": 0.0}]
    return optax.chain(fg.optim.clip_grad_norm(GRAD_CLIP),
                       fg.optim.param_groups(fg.optim.adamw, groups, learning_rate=rate, betas=BETAS))


def torch_model(ctx, model_config: GPTConfig, weights: dict, dtype) -> nanogpt.GPT:
    """nanoGPT's GPT on the manual attention path holding ``weights`` (a state_dict with both
    tied keys), loaded strictly, in ``dtype`` on ``ctx``'s device."""
    model = nanogpt.GPT(nanogpt.GPTConfig(**model_config._asdict()), flash=False)
    model = model.to(device=ctx.torch_device, dtype=torch.float64 if np.dtype(dtype) == np.float64 else torch.float32)
    model.load_state_dict({name: ctx.to_torch(np.asarray(value).astype(dtype)) for name, value in weights.items()},
                          strict=True)
    return model


def synced(ctx) -> dict:
    """The arguments of :func:`funcgrad.compare_steps`: every step's ``(x, y, dropout key data)``."""
    _, vocabulary, train, _ = corpus(ctx)
    model_config = config(len(vocabulary))
    initial = gpt_to_state_dict(gpt_init(ctx.key(400), model_config))  # drawn once, in float32
    num_steps = MAX_ITERS if ctx.max_steps is None else min(ctx.max_steps, MAX_ITERS)
    batches = []
    for step in range(num_steps):
        offsets = fg.char_batch_offsets(jax.random.fold_in(ctx.key(401), step), len(train), BLOCK_SIZE, BATCH_SIZE)
        key = jax.random.key_data(jax.random.fold_in(ctx.key(402), step))
        batches.append((*fg.char_batch(train, offsets, BLOCK_SIZE), np.asarray(key)))

    def jax_loss(params, batch):
        x, y, key = batch
        logits = gpt_apply(params, x, config=model_config, train=True, key=jax.random.wrap_key_data(key))
        return fg.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def torch_setup(dtype):
        model = torch_model(ctx, model_config, initial, dtype)
        optimizer = nanogpt.adamw_param_groups(model, WEIGHT_DECAY, LEARNING_RATE, BETAS)
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier)

    def torch_loss(model, batch):
        x, y, key = batch
        device = next(model.parameters()).device
        with fg.layers.replay_dropout(model, key.numpy()):
            _, loss = model(x.to(device), y.to(device))
        return loss

    def clip(model):
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)

    return {"jax_loss": jax_loss, "jax_optimizer": jax_optimizer(num_steps), "torch_setup": torch_setup,
            "torch_loss": torch_loss, "batches": batches, "torch_after_backward": clip}


def evaluate(ctx, weights: dict, side: str, follow: dict | None = None) -> dict:
    """A trained model (``weights``: its parameters by torch's names) in eval mode, by
    ``side``'s framework: its validation loss, and its logits at each token of a greedy
    continuation of ``PROMPT``: its own (torch, ``follow`` None) or the one ``follow``'s
    logits chose (torch's results: the JAX model and the float64 reference read torch's
    continuation, so each token is judged in the same context)."""
    _, vocabulary, _, val = corpus(ctx)
    model_config = config(len(vocabulary))
    params = fg.from_state_dict(ctx.cast(weights))
    windows = [fg.char_batch(val, fg.char_batch_offsets(jax.random.fold_in(ctx.key(403), i), len(val), BLOCK_SIZE,
                                                        BATCH_SIZE), BLOCK_SIZE) for i in range(EVAL_BATCHES)]
    prompt = fg.encode(PROMPT, vocabulary)
    if side == "jax":
        forward = jax.jit(lambda idx: gpt_apply(params, idx, config=model_config, train=False))
        losses = [fg.cross_entropy(forward(x).reshape(-1, len(vocabulary)), y.reshape(-1)) for x, y in windows]
        tokens = np.asarray(follow["greedy continuation"].value).argmax(axis=1)
        logits = _along(lambda windows: np.asarray(forward(windows)), prompt, tokens)
        return {"validation loss": jnp.mean(jnp.stack(losses)), "greedy continuation": fg.parity.Logits(logits)}
    model = torch_model(ctx, model_config, gpt_to_state_dict(params), ctx.dtype).eval()  # both tied keys
    with torch.no_grad():
        losses = [model(ctx.to_torch(x), ctx.to_torch(y))[1] for x, y in windows]
        forward = lambda windows: model.lm_head(_torch_hidden(model, ctx.to_torch(windows))).cpu().numpy()  # noqa: E731
        if follow is None:
            logits = _greedy(model, ctx.to_torch(prompt[None]), CONTINUATION)
        else:
            logits = _along(forward, prompt, np.asarray(follow["greedy continuation"].value).argmax(axis=1))
    return {"validation loss": torch.stack(losses).mean(), "greedy continuation": fg.parity.Logits(logits)}


def _greedy(model, idx: torch.Tensor, count: int) -> np.ndarray:
    """nanoGPT's ``generate`` with the argmax for the draw: the logits of each chosen token ``(count, V)``."""
    chosen = []
    for _ in range(count):
        logits, _ = model(idx[:, -BLOCK_SIZE:])
        chosen.append(logits[0, -1])
        idx = torch.cat([idx, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return torch.stack(chosen).cpu().numpy()


def _along(forward, prompt: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The logits a model gives each position of ``prompt + tokens`` from the block before it,
    as generation reads it: one pass over the first block, then one window a later token."""
    sequence = np.concatenate([prompt, tokens])
    first = min(len(sequence) - 1, BLOCK_SIZE)
    logits = [forward(sequence[None, :first])[0, len(prompt) - 1:]]
    late = [sequence[end - BLOCK_SIZE:end] for end in range(first + 1, len(sequence))]
    if late:
        logits.append(forward(np.stack(late))[:, -1])
    return np.concatenate(logits)[:len(tokens)]


def _torch_hidden(model, idx: torch.Tensor) -> torch.Tensor:
    """``GPT.forward`` up to ``ln_f``, at every position (its own forward keeps the last alone)."""
    pos = torch.arange(0, idx.size(1), dtype=torch.long, device=idx.device)
    x = model.transformer.drop(model.transformer.wte(idx) + model.transformer.wpe(pos))
    for block in model.transformer.h:
        x = block(x)
    return model.transformer.ln_f(x)


# ---- python -m compare.bench: each side's training loop alone ----

BENCH_STEPS = 50


def timed(ctx) -> Timed:
    """funcgrad's training steps (one compiled step, driven from Python as torch's loop is),
    torch eager's and torch.compile's (nanoGPT as it runs by default: the flash path, SDPA
    drawing its own dropout), over ``BENCH_STEPS`` batches, each side with its own dropout."""
    data_name, vocabulary, train, _ = corpus(ctx)
    model_config = config(len(vocabulary))
    params = ctx.cast(gpt_init(ctx.key(400), model_config))
    windows = [fg.char_batch(train, fg.char_batch_offsets(jax.random.fold_in(ctx.key(401), step), len(train),
                                                          BLOCK_SIZE, BATCH_SIZE), BLOCK_SIZE)
               for step in range(BENCH_STEPS)]
    jax_batches = [(jnp.asarray(x, jnp.int32), jnp.asarray(y, jnp.int32)) for x, y in windows]
    torch_batches = [(ctx.to_torch(x), ctx.to_torch(y)) for x, y in windows]
    optimizer = jax_optimizer(BENCH_STEPS)

    @jax.jit
    def step(params, opt_state, x, y, key):
        def loss(params):
            logits = gpt_apply(params, x, config=model_config, train=True, key=key)
            return fg.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    def jax_run():
        state, losses = (params, optimizer.init(params)), []
        for t, (x, y) in enumerate(jax_batches):
            *state, loss = step(*state, x, y, jax.random.fold_in(ctx.key(402), t))
            losses.append(loss)
        return np.asarray(jnp.stack(losses))

    def torch_side(compile_it: bool):
        model = nanogpt.GPT(nanogpt.GPTConfig(**model_config._asdict()), flash=True)
        model = model.to(device=ctx.torch_device, dtype=ctx.torch_dtype)
        model.load_state_dict({name: ctx.to_torch(value) for name, value in gpt_to_state_dict(params).items()})
        optimizer = nanogpt.adamw_param_groups(model, WEIGHT_DECAY, LEARNING_RATE, BETAS)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier)
        forward = torch_compiled(model) if compile_it else model

        def run():
            losses = []
            for x, y in torch_batches:
                optimizer.zero_grad(set_to_none=True)
                _, loss = forward(x, y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                optimizer.step()
                scheduler.step()
                losses.append(loss.detach())
            return torch.stack(losses).cpu().numpy()
        return run

    return Timed(BENCH_STEPS, {"funcgrad": jax_run, "torch-eager": torch_side(False), TORCH_COMPILE: torch_side(True)},
                 {"funcgrad": f"{data_name}; one jitted step a batch", "torch-eager": "nanoGPT's flash path (SDPA)"})
