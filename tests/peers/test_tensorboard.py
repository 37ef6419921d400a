"""Peer test: TensorBoard's own reader (EventAccumulator) on the event files of a tiny `openlm train`.

Every scalar TensorBoard reads (tag "train/<key>", step, value) equals the metrics.jsonl record of
that step (value rounded to float32: TensorBoard's simple_value is a float), and every numeric
metrics.jsonl field of every step is present in TensorBoard: same tags, same steps, nothing extra.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    a = pc.args()
    tb, = pc.need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
    print("tensorboard %s" % tb.__version__)
    steps = 7
    run, _ = pc.train_tiny(a.openlm, a.work, os.path.join(a.work, "run"), steps=steps)
    tbdir = os.path.join(run, "tensorboard")
    files = [f for f in os.listdir(tbdir) if f.startswith("events.out.tfevents.")]
    pc.check(len(files) == 1, "one event file in %s (%s)" % (tbdir, files))
    ea = EventAccumulator(tbdir, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    tags = ea.Tags()
    print("tags:", {k: v for k, v in tags.items() if v})
    pc.check(not tags.get("tensors"), "no tensor summaries (scalars are simple_value)")
    recs = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if l.strip()]
    pc.check([r["step"] for r in recs] == list(range(1, steps + 1)), "metrics.jsonl has steps 1..%d" % steps)
    expect = {}  # (tag, step) -> value
    for r in recs:
        for k, v in r.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                expect[("train/" + k, r["step"])] = float(v)
    got, dups = {}, []
    for tag in tags.get("scalars", []):
        for e in ea.Scalars(tag):
            if (tag, e.step) in got:
                dups.append((tag, e.step))
            got[(tag, e.step)] = e.value
    pc.check(not dups, "no (tag, step) written twice (%s)" % dups[:5])
    print("%d scalars read by TensorBoard, %d numeric metrics.jsonl values" % (len(got), len(expect)))
    pc.check(len(got) > 0, "TensorBoard reads scalars")
    missing = sorted(set(expect) - set(got))
    extra = sorted(set(got) - set(expect))
    pc.check(not missing, "every metrics.jsonl value is in TensorBoard (missing: %s)" % missing[:10])
    pc.check(not extra, "every TensorBoard scalar has a metrics.jsonl value (extra: %s)" % extra[:10])
    bad = []
    for key, v in expect.items():
        t = got[key]
        if not (t == f32(v) or abs(t - v) <= 1e-6 * max(1.0, abs(v))):
            bad.append((key, v, t))
    for b in bad[:10]:
        print("  %s step %d: metrics.jsonl %r, TensorBoard %r" % (b[0][0], b[0][1], b[1], b[2]))
    pc.check(not bad, "all %d values equal (float32 rounding); %d differ" % (len(expect), len(bad)))
    tagset = sorted({k[0] for k in expect})
    print("tags checked:", tagset)
    pc.check("train/loss" in tagset and "train/lr" in tagset, "loss and lr are among them")


if __name__ == "__main__":
    pc.main(main)
