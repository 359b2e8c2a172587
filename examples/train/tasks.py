"""Python mirror of src/eval/tasks.ts (the source of truth) and of createRng in src/model/weights.ts.

Every function here must draw random numbers in exactly the same order as its TypeScript twin, so
that `held_out_problems(task, n, seed)` returns the very problems `heldOutProblems` does in kvplan
(test/eval/model.test.ts checks this against the pins train.py writes).
"""

M32 = 0xFFFFFFFF


def _mix32(x):
    h = x & M32
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & M32
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & M32
    return (h ^ (h >> 16)) & M32


def create_rng(seed):
    """mulberry32 seeded as createRng(seed).uniform in src/model/weights.ts: floats in [0, 1)."""
    lo = seed & M32
    hi = (seed // 2**32) & M32
    state = _mix32(lo ^ _mix32((hi + 0x9E3779B9) & M32))

    def uniform():
        nonlocal state
        state = (state + 0x6D2B79F5) & M32
        t = state
        t = ((t ^ (t >> 15)) * (t | 1)) & M32
        t = t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & M32)) & M32)
        return ((t ^ (t >> 14)) & M32) / 2**32

    return uniform


def fnv1a32(text):
    """FNV-1a, 32 bits, over the UTF-8 bytes of text."""
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & M32
    return h


def is_held_out(prompt):
    """Prompts reserved for evaluation: never used in training."""
    return fnv1a32(prompt) % 10 == 0


def _int(rng, lo, hi):
    """A uniform integer in [lo, hi]."""
    return lo + int(rng() * (hi - lo + 1))


LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _number(rng, digits):
    first = _int(rng, 1 if digits > 1 else 0, 9)
    rest = "".join(str(_int(rng, 0, 9)) for _ in range(digits - 1))
    return str(first) + rest


def sample_count(rng):
    a = int(_number(rng, _int(rng, 1, 3)))
    k = _int(rng, 4, 12)
    b = a + k - 1
    return {"task": "count", "prompt": f"cnt:{a}-{b}=", "answer": ",".join(str(x) for x in range(a, b + 1))}


def sample_sort(rng):
    n = _int(rng, 4, 16)
    s = "".join(str(_int(rng, 0, 9)) for _ in range(n))
    return {"task": "sort", "prompt": f"sort:{s}=", "answer": "".join(sorted(s))}


def sample_add(rng):
    a = _number(rng, _int(rng, 1, 6))
    b = _number(rng, _int(rng, 1, 6))
    return {"task": "add", "prompt": f"{a}+{b}=", "answer": str(int(a) + int(b))}


# Tasks with multi-step dynamics (issue 17): fixed-width terms, each following from the ones before.
FIB_TERMS = 14
LCG_TERMS = 17
BUB_PASSES = 7


def sample_fib(rng, terms=FIB_TERMS):
    seq = [int(_number(rng, _int(rng, 1, 3))), int(_number(rng, _int(rng, 1, 3)))]
    while len(seq) < terms:
        seq.append((seq[-1] + seq[-2]) % 1000)
    return {"task": "fib", "prompt": f"fib:{seq[0]},{seq[1]}=", "answer": ",".join(f"{x:03d}" for x in seq)}


def sample_lcg(rng, terms=LCG_TERMS):
    a = _int(rng, 2, 9)
    b = _int(rng, 1, 9)
    seq = [int(_number(rng, _int(rng, 1, 2)))]
    while len(seq) < terms:
        seq.append((a * seq[-1] + b) % 100)
    return {"task": "lcg", "prompt": f"lcg:{a},{b},{seq[0]}=", "answer": ",".join(f"{x:02d}" for x in seq)}


def bubble_pass(s):
    d = list(s)
    for i in range(len(d) - 1):
        if d[i] > d[i + 1]:
            d[i], d[i + 1] = d[i + 1], d[i]
    return "".join(d)


def sample_bub(rng, passes=BUB_PASSES):
    n = _int(rng, 6, 8)
    s = "".join(str(_int(rng, 0, 9)) for _ in range(n))
    rows, row = [], s
    for _ in range(passes):
        row = bubble_pass(row)
        rows.append(row)
    return {"task": "bub", "prompt": f"bub:{s}=", "answer": ",".join(rows)}


# Running state machines over 48 input digits (issue 17): each answer digit is the previous one
# combined with the next input digit, so a model that cannot sum many digits at once must decode
# them in order: the dynamics of multi-step arithmetic with written intermediate results.
ACC_DIGITS = 48
REM_DIGITS = 48
REM_DIVISOR = 7


def _digits(rng, n):
    """n digits, 0 five times as likely as each other digit (see runningTask in tasks.ts)."""
    return "".join(str(max(0, _int(rng, 0, 13) - 4)) for _ in range(n))


def sample_acc(rng, terms=ACC_DIGITS):
    s = _digits(rng, terms)
    out, acc = [], 0
    for c in s:
        acc = (acc + int(c)) % 10
        out.append(str(acc))
    return {"task": "acc", "prompt": f"acc:{s}=", "answer": "".join(out)}


def sample_rem(rng, terms=REM_DIGITS):
    s = _digits(rng, terms)
    out, r = [], 0
    for c in s:
        r = (10 * r + int(c)) % REM_DIVISOR
        out.append(str(r))
    return {"task": "rem", "prompt": f"rem:{s}=", "answer": "".join(out)}


TASKS = {
    "count": sample_count,
    "sort": sample_sort,
    "add": sample_add,
    "fib": sample_fib,
    "lcg": sample_lcg,
    "bub": sample_bub,
    "acc": sample_acc,
    "rem": sample_rem,
}
MULTI_STEP_TASKS = ["fib", "lcg", "bub", "acc", "rem"]

# Answer-length overrides for pilots (train.py --terms fib=8): the number of terms (passes for bub).
# Evaluation of an exported model always uses the defaults, which are tasks.ts's.
TERMS = {}


def _sampler(task):
    f = TASKS[task]
    if task in TERMS:
        return lambda rng: f(rng, TERMS[task])
    return f
DEFAULT_TASK = "count"

# The tokenizer: one token per character; '$' is EOS; the mask token is the id after the last char.
CHARS = "$0123456789abcdefghijklmnopqrstuvwxyz+:=,-"
EOS = "$"
GEN_LENGTH = 64  # the generation canvas: answer, then EOS up to 64 tokens


def held_out_problems(task, n, seed=1):
    """n distinct held-out problems of a task, as heldOutProblems(task, n, seed) in tasks.ts."""
    rng = create_rng(seed)
    sample = _sampler(task)
    seen = set()
    out = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * (n + 10):
            raise RuntimeError(f"task {task}: cannot find {n} distinct held-out problems")
        p = sample(rng)
        if is_held_out(p["prompt"]) and p["prompt"] not in seen:
            seen.add(p["prompt"])
            out.append(p)
    return out


def training_problem(task, rng):
    """A problem for training: resampled until its prompt is not held out."""
    sample = _sampler(task)
    while True:
        p = sample(rng)
        if not is_held_out(p["prompt"]):
            return p
