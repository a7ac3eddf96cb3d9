"""Past the 30-minute budget: the distilled student of smollm2-student25 trained further on
FRESH teacher samples (16 new samples per cycle, each trained on once), held-out perplexity after
every cycle: how fast does it move when no training text is repeated?

    OMP_NUM_THREADS=1 nice -n 19 python build/compression/continue_on_fresh_samples.py \
        MINUTES LR OUT.json        # as run: 24 1e-4 (constant lr, AdamW from scratch)

A measurement script (not part of the build): same loss, rows and held-out evaluation as the
compress stage, from the stage's output in the tritonllm cache."""
import json, sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from tritonllm.model_source import resolve_model_dir
from tritonllm.build.quantization.quantize import load_model
from tritonllm.tokenizer import load_tokenizer
from tritonllm.build import corpus
from tritonllm.build.compression import distill_data
from tritonllm.build.compression.compress import heldout_perplexity
from tritonllm.build.compression.distill import _cached_loss
from tritonllm.build.profile import DistillSpec
B = Path("/root/.cache/tritonllm/builds/smollm2-student25/compressed")
minutes = float(sys.argv[1]); lr = float(sys.argv[2]); out = Path(sys.argv[3])
src = resolve_model_dir(None); tok = load_tokenizer(src)
teacher = load_model(src).float().eval()
student = load_model(B / "model").float()
student.get_input_embeddings().requires_grad_(False); student.get_output_embeddings().requires_grad_(False)
spec = DistillSpec(max_steps=1, top_k=64, batch_size=2, seq_len=256, temperature=1.0)
loss_fn = _cached_loss(spec)
opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
ev = heldout_perplexity(tok)
starts = distill_data.prompts(tok, corpus.CALIBRATION)
start = time.monotonic(); tokens = 0; points = []
student.eval()
with torch.no_grad(): points.append({"fresh_tokens": 0, "elapsed_s": 0, **ev(student)})
print(points[-1], flush=True)
cycle = 0
while time.monotonic() - start < 60 * minutes:
    rot = starts[(cycle * 16) % len(starts):] + starts[:(cycle * 16) % len(starts)]
    rows = distill_data.generated(teacher, tok, rot, 1, 256, 64, seed=1000 + cycle, log=lambda *_: None)
    student.train()
    for step in range(len(rows) // 2):
        b = rows.take(torch.arange(2 * step, 2 * step + 2))
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(student, b); loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0); opt.step()
        tokens += 2 * 256
    student.eval()
    with torch.no_grad():
        points.append({"fresh_tokens": tokens, "elapsed_s": round(time.monotonic() - start, 1), "train_loss": loss.item(), **ev(student)})
    print(points[-1], flush=True)
    out.write_text(json.dumps(points, indent=2) + "\n")
    cycle += 1
