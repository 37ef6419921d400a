"""Tricky texts for the byte-level BPE peer test (test_bpe_vs_tokenizers.py), and the
tokenizer.json variants built from one tokenizer trained with the `tokenizers` package."""
import copy
import json
import random

TRICKY = [
    "", " ", "  ", "\n", "a", "Hello world", "Hello, world!", "hello  world", "Hello\tworld\n",
    "I'm you're we've they'll she'd it's I'M YOU'RE WE'VE THEY'LL SHE'D IT'S",
    "don't won't can't shouldn't y'all 'tis ''quoted'' '", "It’s a “curly” apostrophe",
    "123 4567 89012 3.14159 1,000,000 -42 +7 1e10 0x1F 007", "٣٤٥ ①②③ ½ Ⅻ ⁴₂ ๑๒๓ 一二三",
    "   leading spaces", "trailing spaces   ", "multiple    spaces   between  words",
    "\t\ttabs\tand\nnewlines\n\n\r\n end", " \n \n  \n\t \t", "line1\nline2\r\nline3\rline4",
    "emoji 😀👍🏽👨‍👩‍👧‍👦 🇫🇷🇩🇪 ❤️ ✨", "😀" * 40, "CJK 漢字テスト한국어 中文字符串处理", "日本語の文章です。句読点、も。",
    "combining e\u0301 a\u0308 o\u0302 n\u0303 Ame\u0301lie", "precomposed é ä ô ñ Amélie", "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
    "Ａｎｇｓｔ ｆｕｌｌｗｉｄｔｈ １２３", "ﬁ ﬂ ligatures Ǆ Ǳ ǅ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛",
    "\u00a0nbsp\u2009thin\u3000ideographic\u2028ls\u2029ps\u0085nel\u180emvs\u200bzwsp\ufeffbom\u1680ogham",
    "a\u0085b \u0085\u0085 x\u2028\u2028y", "\x00 null \x00\x00", "control \x01\x02\x1b[0m\x7f \x0b\x0c",
    "Ω≈ç√∫˜µ≤≥÷ ∀∃∈∉ ⊂⊃ ∞", "U+FFFD \ufffd\ufffd", "नमस्ते दुनिया", "مرحبا بالعالم", "สวัสดีครับ",
    "שָׁלוֹם", "Tiếng Việt có dấu", "Ελληνικά κείμενα", "Русский текст, ёлки-палки!",
    "def f(x):\n    return x**2  # comment\n\n\tpass\n", "if (a && b) { c++; } else { d--; }",
    "https://example.com/path?q=1&r=2#frag", "email@example.com", "C++ std::vector<int> v{1,2,3};",
    "abc123def 456ghi", "___ --- ... !!!??? $100.00 50% #hashtag @mention i.e. e.g.",
    "<|endoftext|>", "<|endoftext|>in text<|endoftext|><|endoftext|>", " <|endoftext|> ", "<|endoftext|",
    "<|padding|><|endoftext|>", "x<|endoftext|>y", "a  b   c    d     e", "\t\t\tindented\t\t",
    "word words sword wordy word", "IT'S it'ſ IT'ſ 'K 'K 'ﬆ 'ß 'İ 'LL 'Ll", " [MASK] [MASK]x y[MASK] ", "a" * 1000, "x" * 5000,
    "ab" * 700, " " * 300, "\n" * 50, "aé" * 300, "the quick brown fox jumps over the lazy dog " * 20,
    "supercalifragilisticexpialidocious" * 10, "1234567890" * 30, "😀a😀b" * 50,
]

POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" " * 12) + list("\t\n\r") + list(".,;:!?'\"-_()[]{}<>/\\|@#$%^&*+=~`")
    + list("éèêëàâäôöûüçñßøåæœÉÀÇ") + ["e\u0301", "a\u0308", "\u0301", "\u0308", "\u0327"]
    + list("漢字テスト한국어中文日本") + list("😀👍🏽🇫🇷❤️✨") + ["\u200d", "\ufe0f", "\u00a0", "\u3000", "\u0085", "\u2028"]
    + list("٣٤٥①½Ⅻ١٢") + list("абвгдеёжзαβγδεζ") + list("नमस्तेمرحباสวัสดี") + ["'s", "'t", "'re", "'ll", "'d", "'m", "'ve"]
    + ["<|endoftext|>", "<|padding|>", "  ", "   ", "[MASK]", "word"]
)


def random_texts(n, seed=1234, max_len=60):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, max_len)
        out.append("".join(rng.choice(POOL) for _ in range(k)))
    return out


INVALID_UTF8 = [
    b"abc\xff", b"\xe2\x82", b"\xe2\x82 end", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
    b"caf\xe9 au lait", b"\xf0\x9f\x98", b"\xf0\x9f\x98 x", b"a\x80b\xbf\xfe", b"\xe0\x80\x80", b"\xef\xbf",
    b"ok \xf5\x80 \xc2", b"<|endoftext|>\xff<|endoftext|>",
]


def corpus_lines():
    """Training text for the test tokenizer: the tricky strings and random mixes."""
    lines = TRICKY + random_texts(3000, seed=99, max_len=80)
    base = ("The model was trained on a large corpus. It's not what we'd expect; they'll see. "
            "Numbers like 2024, 3.14 and 1,000 appear. Code: for (int i = 0; i < n; ++i) { sum += i; }")
    lines += [base] * 20
    return lines


def train_base(workdir):
    """A GPT-NeoX-like tokenizer.json (NFC, ByteLevel, <|endoftext|> = 0) trained with `tokenizers`."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=1, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    # GPT-NeoX also carries whitespace runs as normalized, non-special added tokens.
    tok.add_tokens([AddedToken(" " * k, normalized=True, special=False) for k in (2, 3, 4, 8)]
                   + [AddedToken("\t\t", normalized=True, special=False)])
    return json.loads(tok.to_str())


def variants(base):
    """name -> tokenizer.json dict: the configurations the C++ tokenizer must match."""
    out = {"neox": base}
    legacy = copy.deepcopy(base)
    legacy["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in legacy["model"]["merges"]]
    out["neox_legacy_merges"] = legacy
    seq = copy.deepcopy(base)
    seq["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    seq["model"]["ignore_merges"] = True
    next_id = max(t["id"] for t in seq["added_tokens"]) + 1
    seq["added_tokens"] += [
        {"id": next_id, "content": "[MASK]", "single_word": False, "lstrip": True, "rstrip": True,
         "normalized": False, "special": True},
        {"id": next_id + 1, "content": "word", "single_word": True, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False}]
    out["llama3_split"] = seq
    pre = copy.deepcopy(base)
    pre["normalizer"] = None
    pre["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    out["prefix_space_no_norm"] = pre
    nfkc = copy.deepcopy(base)
    nfkc["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}]}
    nfkc["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "o"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"\d"}, "behavior": "Contiguous", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"\s"}, "behavior": "MergedWithPrevious", "invert": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    out["nfkc_splits"] = nfkc
    return out
