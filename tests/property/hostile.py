"""Hostile inputs for the three parsers at Vigil's edges, and what each may answer.

This module owns the seeded mutators (bytes, JSON documents, YAML text), the corpora they
start from (the carried samples and the repository's playbooks) and one *target* per
parser: a callable that feeds it one input and raises ``UnexpectedError`` for anything
but the parser's own typed refusal. ``tests/property/test_hostile_*.py`` run them for
10^5 inputs each; ``bench/fuzz.py`` runs the same targets under atheris for longer.
"""

from __future__ import annotations

import json
import random
import re
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from detector.config import DetectorConfig, Limits, SeriesRule
from detector.errors import DecodeError, TooLargeError
from detector.pipeline.ingest import Ingestor
from detector.remote_write import decode, encode
from detector.series.registry import SeriesRegistry
from remediator.actions.registry import ActionRegistry
from remediator.catalog.loader import load_catalog
from remediator.errors import WebhookError
from remediator.webhook import parse_notification

ROOT = Path(__file__).resolve().parents[2]


class UnexpectedError(AssertionError):
    """A parser answered a hostile input with something other than its typed refusal."""

    def __init__(
        self, target: str, data: bytes, exc: BaseException | None, detail: str = ""
    ) -> None:
        super().__init__(
            f"{target}: {detail or type(exc).__name__ + ': ' + str(exc)[:300]} "
            f"(input of {len(data)} bytes: {data[:120]!r})"
        )
        self.data = data


# --------------------------------------------------------------------------- mutators

INTERESTING = (
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\xff\xff\xff\xff\x0f",
    b"\x08",
    b"\x10",
    b"\x0a",
    b"\x12",
    b"\x22",
    b"\x2a",
    b"\x0b",
    b"\x0c",
)  # tags of fields 1-5 as varint, length-delimited, groups


def mutate_bytes(
    rng: random.Random, data: bytes, corpus: list[bytes], extra: tuple[bytes, ...] = INTERESTING
) -> bytes:
    """One to four byte-level mutations: flips, sets, inserts, deletes, duplicated or
    spliced ranges, truncation and tokens that mean something to the format."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        n = len(buf)
        kind = rng.randrange(9)
        if n == 0 or kind == 0:  # insert tokens or random bytes
            chunk = rng.choice(extra) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 8))
            at = rng.randint(0, n)
            buf[at:at] = chunk
        elif kind == 1:  # flip one bit
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif kind == 2:  # set a byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif kind == 3:  # delete a range
            a = rng.randrange(n)
            del buf[a : a + rng.randint(1, 16)]
        elif kind == 4:  # duplicate a range in place
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 64))
            buf[b:b] = buf[a:b]
        elif kind == 5:  # truncate
            del buf[rng.randrange(n) :]
        elif kind == 6:  # splice from another corpus entry
            other = rng.choice(corpus)
            if other:
                a = rng.randrange(len(other))
                at = rng.randrange(n)
                buf[at:] = other[a : a + rng.randint(1, 256)] + buf[at:]
        elif kind == 7:  # copy a range over another place
            a, at = rng.randrange(n), rng.randrange(n)
            chunk = bytes(buf[a : a + rng.randint(1, 32)])
            buf[at : at + len(chunk)] = chunk
        else:  # overwrite with an interesting token
            chunk = rng.choice(extra)
            at = rng.randrange(n)
            buf[at : at + len(chunk)] = chunk
    return bytes(buf)


# --------------------------------------------------------------------------- remote write


def _decompressed_sample(name: str) -> bytes:
    body = (SAMPLES_DIR / name).read_bytes()
    return decode.decompress(body, max_decompressed_bytes=1 << 26).tobytes()


SAMPLES_DIR = ROOT / "tests" / "fixtures" / "samples"


def _generated_series(rng: random.Random) -> list[encode.Series]:
    out = []
    for i in range(rng.randint(1, 6)):
        picks = (
            rng.choice(("job", "instance", "le", "a", "zz", "é", "x" * 40))
            for _ in range(rng.randint(0, 5))
        )
        names = sorted({"__name__", *picks}, key=str.encode)
        labels = [
            (n, f"{'v' * rng.choice((0, 1, 3, 90))}{i}" if n != "__name__" else f"m{i}")
            for n in names
        ]
        samples = [
            (
                rng.randint(-(1 << 40), 1 << 45),
                struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0],
            )
            for _ in range(rng.randint(0, 3))
        ]
        # a series may end in a field cut short after its tag, or in an unknown field
        extra = rng.choice(
            (
                b"",
                b"",
                b"",
                b"\x08",
                b"\x10",
                b"\x0a",
                b"\x12\x05",
                b"\x09\x00",
                b"\x30\x01",
                b"\x3a\x00",
                b"\x0b",
            )
        )
        out.append(
            encode.Series(
                labels=labels,
                samples=samples,
                n_exemplars=rng.randint(0, 1),
                n_histograms=rng.randint(0, 1),
                extra=extra,
            )
        )
    return out


def remote_write_corpus(seed: int = 1) -> list[tuple[int, bytes]]:
    """(version, uncompressed protobuf) seeds: Prometheus's own requests (cut to a few KB,
    at message boundaries where possible) and generated 1.0 and 2.0 requests."""
    rng = random.Random(seed)
    out: list[tuple[int, bytes]] = []
    for name in (
        "rw_data_1.snappy.bin",
        "rw_metadata_1.snappy.bin",
        "rw_stale_markers_example.snappy.bin",
    ):
        raw = _decompressed_sample(name)
        out += [(1, raw[:2000]), (1, raw[:6000])]
        # a whole prefix of messages, so the seed itself decodes
        pos = 0
        while pos < min(len(raw), 3000):
            length, after = _read_varint(raw, pos + 1)
            pos = after + length
        out.append((1, raw[:pos]))
    for _ in range(24):
        series = _generated_series(rng)
        out.append((1, encode.encode_v1(series, n_metadata=rng.randint(0, 2))))
        out.append((2, encode.encode_v2(series)))
    return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while pos < len(buf):
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return n, pos


TIGHT_LIMITS = Limits(
    max_series=40,
    max_ignored_series=100,
    max_body_bytes=1 << 16,
    max_decompressed_bytes=1 << 14,
    max_labels_per_series=4,
    max_label_name_bytes=16,
    max_label_value_bytes=64,
)


def tight_config() -> DetectorConfig:
    return DetectorConfig(
        limits=TIGHT_LIMITS,
        series=(SeriesRule(name="jobs", match='{job=~".+"}', max_series=5), SeriesRule(name="all")),
    )


class RemoteWriteTarget:
    """Snappy → wire scan → series registry, as the handler runs them (``Ingestor``).

    Allowed: an ``Ingested`` or ``DecodeError`` (its subclasses included). Two ingestors
    run every input: default limits, and tight ones so that the limits are hit often.
    """

    name = "remote_write"

    def __init__(self) -> None:
        self.ingestors = [
            Ingestor(SeriesRegistry(DetectorConfig()), max_decompressed_bytes=1 << 20),
            Ingestor(
                SeriesRegistry(tight_config()),
                max_decompressed_bytes=TIGHT_LIMITS.max_decompressed_bytes,
            ),
        ]
        self.outcomes: dict[str, int] = {}

    def __call__(self, body: bytes, version: int) -> None:
        for ingestor in self.ingestors:
            try:
                if ingestor.ingest_known(body, version) is None:
                    ingestor.ingest(body, version)
                key = "ok"
            except TooLargeError:
                key = "too_large"
            except DecodeError:
                key = "decode_error"
            except Exception as exc:
                raise UnexpectedError(f"{self.name} v{version}", body, exc) from exc
            self.outcomes[key] = self.outcomes.get(key, 0) + 1


def remote_write_inputs(rng: random.Random, n: int) -> Iterator[tuple[bytes, int]]:
    """``n`` (snappy body, version) pairs: mutated protobuf compressed properly, mutated
    snappy streams, and arbitrary bytes; a request sent with the other version's type."""
    corpus = remote_write_corpus(rng.randrange(1 << 30))
    raws = [raw for _, raw in corpus]
    for _ in range(n):
        version, raw = rng.choice(corpus)
        if rng.random() < 0.1:
            version = 3 - version
        kind = rng.random()
        if kind < 0.65:
            yield encode.compress(mutate_bytes(rng, raw, raws)), version
        elif kind < 0.9:
            yield mutate_bytes(rng, encode.compress(raw), raws), version
        else:
            yield rng.randbytes(rng.randrange(0, 200)), version


# --------------------------------------------------------------------------- webhook


def webhook_corpus() -> list[Any]:
    """Webhook documents: the carried samples, and the alert of Alertmanager's API sample."""
    docs = [json.loads((SAMPLES_DIR / f"webhook_0{i}.json").read_text())["body"] for i in (1, 2)]
    return docs


JSON_VALUES: tuple[Callable[[random.Random], Any], ...] = (
    lambda r: None,
    lambda r: True,
    lambda r: 0,
    lambda r: -1,
    lambda r: 1.5e308,
    lambda r: float("nan"),
    lambda r: 10 ** r.randint(18, 40),
    lambda r: "",
    lambda r: "firing",
    lambda r: "resolved",
    lambda r: "4",
    lambda r: [],
    lambda r: {},
    lambda r: "\ud800",
    lambda r: "\u202e\x00\uffff\U0001f600",
    lambda r: "x" * r.choice((64, 65, 5000)),
    lambda r: "0001-01-01T00:00:00Z",
    lambda r: "9999-12-31T23:59:59.999999999+14:00",
    lambda r: "2026-13-40T25:61:61Z",
    lambda r: [{}] * r.randint(1, 30),
    lambda r: {"a": "b"},
    lambda r: {"": ""},
    lambda r: {"k": 1},
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


def _nest(rng: random.Random, depth: int) -> str:
    opener, closer = rng.choice((("[", "]"), ('{"a":', "}")))
    return opener * depth + "1" + closer * depth


def mutate_json(rng: random.Random, doc: Any) -> Any:
    """Change one to three places of a document: a value of a wrong type, a key removed
    or added, an array repeated many times, a container replaced by its neighbour."""
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(doc))
        path = rng.choice(paths)
        if not path:
            doc = rng.choice(JSON_VALUES)(rng) if rng.random() < 0.05 else doc
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        kind = rng.randrange(5)
        if kind == 0 and isinstance(parent, dict):
            del parent[key]
        elif kind == 1 and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key] * rng.choice((2, 50, 1001))
        elif kind == 2 and isinstance(parent, dict):
            parent[rng.choice(("extra", "", "alerts", "version", "\x00", "labels"))] = rng.choice(
                JSON_VALUES
            )(rng)
        else:
            parent[key] = rng.choice(JSON_VALUES)(rng)
    return doc


def webhook_inputs(rng: random.Random, n: int) -> Iterator[bytes]:
    """``n`` bodies: structurally mutated documents (half of them byte-mutated after
    serialising), deep nesting and arbitrary bytes."""
    docs = webhook_corpus()
    texts = [json.dumps(d).encode() for d in docs]
    for _ in range(n):
        kind = rng.random()
        if kind < 0.55:
            doc = mutate_json(rng, rng.choice(docs))
            yield json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        elif kind < 0.9:
            base = json.dumps(mutate_json(rng, rng.choice(docs))).encode()
            yield mutate_bytes(
                rng,
                base,
                texts,
                (
                    b"{",
                    b"}",
                    b"[",
                    b"]",
                    b'"',
                    b",",
                    b":",
                    b"null",
                    b"\\u0000",
                    b"\\ud800",
                    b"1e999",
                    b"\xff",
                    b"\xc3",
                ),
            )
        elif kind < 0.95:
            yield (
                b'{"version": "4", "status": "firing", "alerts": '
                + _nest(rng, rng.choice((10, 500, 5000, 100_000))).encode()
                + b"}"
            )
        else:
            yield rng.randbytes(rng.randrange(0, 100))


class WebhookTarget:
    """``parse_notification``: allowed are a ``Notification`` or ``WebhookError``."""

    name = "webhook"

    def __init__(self, *, max_alerts: int = 1000) -> None:
        self.max_alerts = max_alerts
        self.outcomes: dict[str, int] = {}

    def __call__(self, body: bytes) -> None:
        try:
            note = parse_notification(body, max_alerts=self.max_alerts)
            if len(note.alerts) > self.max_alerts:
                raise UnexpectedError(
                    self.name, body, None, f"{len(note.alerts)} alerts accepted over the limit"
                )
            # what was accepted must be writable as UTF-8 (audit, logs, the Kubernetes API)
            json.dumps([a.to_json() for a in note.alerts], ensure_ascii=False).encode()
            key = "ok"
        except WebhookError:
            key = "webhook_error"
        except UnexpectedError:
            raise
        except Exception as exc:
            raise UnexpectedError(self.name, body, exc) from exc
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


# --------------------------------------------------------------------------- playbooks

# the path is made of the document's own keys, so it may hold anything but a line break
PROBLEM = re.compile(r"^(?P<file>[^\n]+?):(?P<line>[1-9][0-9]*): (?P<path>[^\n]+?): (?P<msg>.+)$")


def playbook_corpus() -> list[str]:
    """Every playbook in the repository: shipped, fixtures (valid and invalid), tests."""
    files = sorted(
        {
            *ROOT.glob("playbooks/*.yaml"),
            *ROOT.glob("tests/fixtures/playbooks/*/*.yaml"),
            *ROOT.glob("tests/unit/remediator/playbooks/*.yaml"),
            *ROOT.glob("tests/integration/playbooks/*.yaml"),
        }
    )
    # comments cost the scanner time and the loader nothing: the mutations add their own
    return [
        "\n".join(
            line
            for line in f.read_text(encoding="utf-8").split("\n")
            if not line.lstrip().startswith("#")
        )
        for f in files
    ]


YAML_TOKENS = tuple(
    t.encode()
    for t in (
        "&a ",
        "*a",
        "<<: *a\n",
        "!!binary ",
        "!!python/object:os.system ",
        "!!set ",
        "? ",
        ": ",
        "- ",
        "{",
        "}",
        "[",
        "]",
        "|",
        ">-",
        "'",
        '"',
        "#",
        "\t",
        "\n",
        "\n  ",
        "---\n",
        "...\n",
        "%YAML 1.1\n",
        "~",
        "null",
        "true",
        "1e999",
        "0x1F",
        "2024-01-01",
        "\\u0000",
        "{{",
        "}}",
        "{{ labels.pod }}",
        "\u00e9",
        "\ufeff",
        "\x00",
    )
)


def mutate_yaml(rng: random.Random, text: str, corpus: list[str]) -> str:
    """Line-level changes (drop, repeat, swap, re-indent a line) or byte-level ones."""
    if rng.random() < 0.5:
        lines = text.split("\n")
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(lines))
            kind = rng.randrange(5)
            if kind == 0 and len(lines) > 1:
                del lines[i]
            elif kind == 1:
                lines[i:i] = [lines[i]] * rng.randint(1, 3)
            elif kind == 2:
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            elif kind == 3:
                lines[i] = (
                    " " * rng.choice((1, 2, 4)) + lines[i]
                    if rng.random() < 0.5
                    else lines[i].lstrip()
                )
            else:
                other = rng.choice(corpus).split("\n")
                lines[i:i] = other[rng.randrange(len(other)) :][: rng.randint(1, 6)]
        return "\n".join(lines)
    raw = mutate_bytes(rng, text.encode(), [c.encode() for c in corpus], YAML_TOKENS)
    return raw.decode("utf-8", "replace")


def _bomb(rng: random.Random) -> str:
    width = rng.randint(2, 10)
    rows = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    rows += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, 12)]
    return "\n".join(rows) + "\nspec: {steps: *l11}\n"


def playbook_inputs(rng: random.Random, n: int) -> Iterator[str]:
    """``n`` playbook texts: mutated corpus files, alias bombs and deep nesting."""
    corpus = playbook_corpus()
    for _ in range(n):
        kind = rng.random()
        # bombs take ~50 ms to refuse and deep flow nesting costs PyYAML's scanner time
        # quadratic in the depth, so they are few and shallow here (the unit tests and
        # bench/fuzz.py try big ones)
        if kind < 0.996:
            yield mutate_yaml(rng, rng.choice(corpus), corpus)
        elif kind < 0.998:
            yield _bomb(rng)
        else:
            depth = rng.choice((50, 70, 200))
            yield "spec: " + "[" * depth + "]" * depth + "\n"


class PlaybookTarget:
    """``load_catalog`` over one file: allowed are entries, or problems each shaped
    ``file:line: path: message`` naming that file. Never an exception."""

    name = "playbook"

    def __init__(self, registry: ActionRegistry, workdir: Path | None = None) -> None:
        self.registry = registry
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory()
        self.dir = workdir or Path(self._tmp.name if self._tmp else ".")
        self.outcomes: dict[str, int] = {}

    def __call__(self, text: str | bytes) -> None:
        raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        # named as the document names itself, so that a valid playbook can load
        named = re.search(rb"\n  name: ([A-Za-z0-9-]{1,60})\n", raw)
        path = self.dir / f"{named[1].decode() if named else 'fuzzed'}.yaml"
        path.write_bytes(raw)
        data = raw
        try:
            catalog = load_catalog([path], self.registry)
        except Exception as exc:
            raise UnexpectedError(self.name, data, exc) from exc
        for problem in catalog.problems:
            match = PROBLEM.match(problem)
            if match is None or match["file"] != str(path):
                raise UnexpectedError(
                    self.name,
                    data,
                    None,
                    f"problem not shaped file:line: path: message: {problem!r}",
                )
        if catalog.problems and catalog.entries:
            raise UnexpectedError(self.name, data, None, "one file both loaded and refused")
        key = "problems" if catalog.problems else "loaded"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        path.unlink()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
