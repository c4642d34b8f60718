"""The ``ambervault`` command: inspect and move data in vault files without writing code.

Exit codes: 0 success; 1 the thing asked for is missing, ``check`` found problems or a bundle
did not validate; 2 bad command-line usage; 3 the vault refused the operation (busy, corrupted,
read-only, I/O error).
Errors are one line on stderr. ``--json`` prints machine-readable output.

An encrypted vault's key is read from the ``AMBERVAULT_KEY`` environment variable (a
passphrase), never from the command line, where other users could see it in the process list.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from . import __version__
from ._ambervault import inspect
from .bundles import validate_bundle
from .columns import ColumnVault
from .exceptions import BundleError, NotFound, VaultError
from .kvault import KVault

EXIT_OK, EXIT_MISSING, EXIT_USAGE, EXIT_VAULT = 0, 1, 2, 3

#: The environment variable that holds the passphrase of an encrypted vault.
KEY_ENV = "AMBERVAULT_KEY"


def _key() -> Optional[str]:
    """The passphrase of ``AMBERVAULT_KEY`` (None when unset or empty: a plain vault)."""
    return os.environ.get(KEY_ENV) or None


class Progress:
    """A progress line on stderr (items, bytes, rate, ETA) when stderr is a terminal; silent
    when piped or with ``--quiet``. ``label`` starts the line (e.g. the stage of a command)."""

    def __init__(
        self, total_items: Optional[int], total_bytes: Optional[int], enabled: bool, label: str = ""
    ) -> None:
        self.label = f"{label}: " if label else ""
        self.items = 0
        self.bytes = 0
        self.total_items = total_items
        self.total_bytes = total_bytes
        self.enabled = enabled and sys.stderr.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def add(self, nbytes: int) -> None:
        self.items += 1
        self.bytes += nbytes
        now = time.monotonic()
        if self.enabled and now - self._last > 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.bytes / elapsed
        text = f"\r{self.label}{self.items:,}"
        if self.total_items:
            text += f"/{self.total_items:,}"
        text += f" items, {_human(self.bytes)}"
        if self.total_bytes:
            text += f"/{_human(self.total_bytes)}"
            remaining = (self.total_bytes - self.bytes) / rate if rate else 0
            text += f", ETA {remaining:,.0f}s"
        text += f", {_human(rate)}/s "
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else repr(key)


def _emit(args: argparse.Namespace, data: Any, lines: Callable[[], Iterator[str]]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        for line in lines():
            print(line)


def _open_kv(args: argparse.Namespace, write: bool = False) -> KVault:
    if not write and not Path(args.file).exists():
        raise NotFound(f"{args.file} does not exist")
    return KVault(args.file, table=args.table, read_only=not write, key=_key())


# -- commands ------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    if not Path(args.file).exists():
        raise NotFound(f"{args.file} does not exist")
    info = inspect(args.file, _key())
    info["file"] = args.file
    info["file_bytes"] = os.path.getsize(args.file)
    wal = args.file + "-wal"
    info["wal_bytes"] = os.path.getsize(wal) if os.path.exists(wal) else 0
    for t in info["tables"]:
        with KVault(args.file, table=t["name"], read_only=True, key=_key()) as kv:
            t["limits"] = kv.limits()

    def lines() -> Iterator[str]:
        yield f"file            {args.file}"
        yield f"format version  {info['format_version']}"
        yield f"size            {_human(info['file_bytes'])} (+ {_human(info['wal_bytes'])} WAL)"
        yield f"free pages      {info['free_pages']} of {info['page_count']} ({info['page_size']} B each)"
        for t in info["tables"]:
            ratio = t["logical_bytes"] / t["stored_bytes"] if t["stored_bytes"] else 1.0
            yield (
                f"table {t['name']:<10} {t['keys']:,} keys, {_human(t['logical_bytes'])} of values, "
                f"{_human(t['stored_bytes'])} stored (dedup x{ratio:.2f})"
            )
            limits = t["limits"]
            limit = "none" if limits["max_bytes"] is None else _human(limits["max_bytes"])
            ttl = "none" if limits["default_ttl"] is None else f"{limits['default_ttl']:g} s"
            yield (
                f"      cache: limit {limit}, eviction {limits['eviction']}, "
                f"dedup {limits['dedup']}, default TTL {ttl}, history {limits['history']}"
            )
        for c in info["columns"]:
            yield f"column {c['name']:<16} {c['dtype']:<8} {c['length']:>12,} elements  {_human(c['bytes'])}"

    _emit(args, info, lines)
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    with _open_kv(args) as kv:
        rows: List[Dict[str, Any]] = []
        for key in kv.keys(prefix=args.prefix, limit=args.limit):
            row: Dict[str, Any] = {"key": _key_text(key)}
            if args.long:
                meta = kv.info(key) or {}
                row.update(
                    size=meta.get("size"), version=meta.get("version"), updated_ms=meta.get("updated_at_ms")
                )
            rows.append(row)
            if not args.json:
                if args.long:
                    stamp = time.strftime(
                        "%Y-%m-%d %H:%M:%S", time.localtime((row["updated_ms"] or 0) / 1000)
                    )
                    print(f"{row['size']:>12,}  v{row['version']:<4} {stamp}  {row['key']}")
                else:
                    print(row["key"])
        if args.json:
            print(json.dumps(rows, indent=2))
    return EXIT_OK


def _parse_key(text: str) -> Any:
    """Keys are given as text; ``hex:...`` gives raw bytes."""
    return bytes.fromhex(text[4:]) if text.startswith("hex:") else text


def cmd_get(args: argparse.Namespace) -> int:
    with _open_kv(args) as kv:
        key = _parse_key(args.key)
        if args.output in (None, "-"):
            out = sys.stdout.buffer
            n = kv.get_to_file(key, out)
            out.flush()
        else:
            tmp = args.output + ".part"
            try:
                with open(tmp, "wb") as f:
                    n = kv.get_to_file(key, f)
                os.replace(tmp, args.output)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            if not args.quiet:
                print(f"wrote {n:,} bytes to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_put(args: argparse.Namespace) -> int:
    with _open_kv(args, write=True) as kv:
        key = _parse_key(args.key)
        if args.path == "-":
            n = kv.put_file(key, sys.stdin.buffer)
        else:
            with open(args.path, "rb") as f:
                n = kv.put_file(key, f)
        _emit(args, {"key": args.key, "bytes": n}, lambda: iter([f"stored {n:,} bytes under {args.key}"]))
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    with _open_kv(args, write=True) as kv:
        if not kv.delete(_parse_key(args.key)):
            raise NotFound(args.key)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        raise NotFound(f"{args.dir} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    progress = Progress(len(files), sum(p.stat().st_size for p in files), not args.quiet)
    with KVault(args.file, table=args.table, key=_key()) as kv:
        for path in files:
            key = (args.prefix or "") + path.relative_to(root).as_posix()
            with open(path, "rb") as f:
                progress.add(kv.put_file(key, f))
    progress.close()
    _emit(
        args,
        {"files": progress.items, "bytes": progress.bytes},
        lambda: iter([f"imported {progress.items:,} files, {_human(progress.bytes)}"]),
    )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    skipped: List[str] = []
    with _open_kv(args) as kv:
        progress = Progress(len(kv.keys(prefix=args.prefix)), None, not args.quiet)
        for key in kv.keys(prefix=args.prefix):
            name = key if isinstance(key, str) else None
            relative = Path(name) if name else None
            # Keys become paths only when they are safe ones: no absolute paths, no "..".
            if relative is None or relative.is_absolute() or ".." in relative.parts or not relative.parts:
                skipped.append(_key_text(key))
                continue
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                progress.add(kv.get_to_file(key, f))
        progress.close()
    for key in skipped:
        print(f"ambervault: skipped key {key}: not a safe relative path", file=sys.stderr)
    _emit(
        args,
        {"files": progress.items, "bytes": progress.bytes, "skipped": skipped},
        lambda: iter([f"exported {progress.items:,} files, {_human(progress.bytes)}"]),
    )
    return EXIT_OK


def _open_cv(args: argparse.Namespace) -> ColumnVault:
    if not Path(args.file).exists():
        raise NotFound(f"{args.file} does not exist")
    return ColumnVault(args.file, read_only=True, key=_key())


def cmd_cols(args: argparse.Namespace) -> int:
    columns = inspect(args.file, _key())["columns"] if Path(args.file).exists() else None
    if columns is None:
        raise NotFound(f"{args.file} does not exist")
    _emit(args, columns, lambda: (f"{c['name']:<20} {c['dtype']:<8} {c['length']:>12,}" for c in columns))
    return EXIT_OK


def _column(args: argparse.Namespace) -> Any:
    cv = _open_cv(args)
    return cv, cv[args.name]


def cmd_col(args: argparse.Namespace) -> int:
    cv, col = _column(args)
    n = len(col)
    if args.tail is not None:
        start, stop = max(0, n - args.tail), n
    else:
        start, stop = 0, min(n, args.head if args.head is not None else 20)
    values = col[start:stop]
    shown = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v for v in values]
    _emit(
        args,
        {"name": args.name, "dtype": col.dtype, "length": n, "start": start, "values": shown},
        lambda: (f"{start + i}\t{v}" for i, v in enumerate(shown)),
    )
    cv.close()
    return EXIT_OK


def cmd_col_export(args: argparse.Namespace) -> int:
    cv, col = _column(args)
    out = args.output or f"{args.name}.{args.format}"
    if args.format == "npy":
        import numpy as np

        np.save(out, col.to_numpy(), allow_pickle=False)
    elif args.format == "csv":
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", args.name])
            for i, v in enumerate(col):
                writer.writerow([i, v.hex() if isinstance(v, bytes) else v])
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise _Missing("parquet export needs pyarrow: pip install pyarrow") from None
        col.to_parquet(out)  # streamed in row groups; see docs/arrow.md
    n = len(col)
    cv.close()
    _emit(args, {"output": out, "elements": n}, lambda: iter([f"wrote {n:,} elements to {out}"]))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    with _open_kv(args) as kv:
        problems = kv.check()
    _emit(args, {"problems": problems}, lambda: iter(problems or ["ok"]))
    return EXIT_MISSING if problems else EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    with _open_kv(args) as kv:
        kv.backup(args.dest)
    _emit(args, {"backup": args.dest}, lambda: iter([f"backed up to {args.dest}"]))
    return EXIT_OK


def cmd_optimize(args: argparse.Namespace) -> int:
    before = os.path.getsize(args.file)
    with _open_kv(args, write=True) as kv:
        kv.optimize()
    after = os.path.getsize(args.file)
    _emit(
        args,
        {"bytes_before": before, "bytes_after": after},
        lambda: iter([f"{_human(before)} -> {_human(after)}"]),
    )
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from .migrate import migrate_kohakuvault

    summary = migrate_kohakuvault(
        args.old,
        args.new,
        allow_pickle=args.allow_pickle,
        progress=False if args.quiet else None,
        key=_key(),
    )
    _emit(args, summary.to_dict(), lambda: iter(summary.lines()))
    return EXIT_OK


class _StagedProgress:
    """The ``progress`` callback of the bundle functions: one :class:`Progress` line per stage
    (export, validate, import)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stage: Optional[str] = None
        self.bar: Optional[Progress] = None

    def __call__(self, stage: str, nbytes: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = Progress(None, None, self.enabled, label=stage)
        assert self.bar is not None
        self.bar.add(nbytes)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _bundle_lines(summary: Dict[str, Any]) -> List[str]:
    prefix = "(all keys)" if summary["prefix"] is None else _key_text(summary["prefix"])
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary["created_at_ms"] / 1000))
    return [
        f"{summary['keys']:,} keys, {_human(summary['bytes'])} from table {summary['source_table']}, "
        f"prefix {prefix}, exported {created}",
        f"{summary['algorithm']} {summary['digest']}",
    ]


def cmd_bundle_export(args: argparse.Namespace) -> int:
    bar = _StagedProgress(not args.quiet)
    with _open_kv(args) as kv:
        try:
            prefix = None if args.prefix is None else _parse_key(args.prefix)
            summary = kv.export_bundle(
                args.out, args.branch, prefix=prefix, overwrite=args.overwrite, progress=bar
            )
        finally:
            bar.close()
    _emit(args, summary, lambda: iter([f"wrote {summary['path']}", *_bundle_lines(summary)]))
    return EXIT_OK


def cmd_bundle_validate(args: argparse.Namespace) -> int:
    if not Path(args.bundle).exists():
        raise NotFound(f"{args.bundle} does not exist")
    bar = _StagedProgress(not args.quiet)
    try:
        summary = validate_bundle(args.bundle, progress=bar)
    finally:
        bar.close()
    _emit(args, summary, lambda: iter([f"ok: {summary['path']}", *_bundle_lines(summary)]))
    return EXIT_OK


def cmd_bundle_import(args: argparse.Namespace) -> int:
    if not Path(args.bundle).exists():
        raise NotFound(f"{args.bundle} does not exist")
    bar = _StagedProgress(not args.quiet)
    created = not os.path.exists(args.file)
    try:
        with KVault(args.file, table=args.table, key=_key()) as kv:
            summary = kv.import_bundle(args.bundle, as_branch=args.as_branch, progress=bar)
    except BaseException:
        if created:  # a refused import leaves no new, empty vault behind
            for name in (args.file, args.file + "-wal", args.file + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)
        raise
    finally:
        bar.close()

    def lines() -> Iterator[str]:
        yield (
            f"imported {summary['keys']:,} keys into table {args.table}: {summary['added']:,} added, "
            f"{summary['changed']:,} changed, {summary['deleted']:,} deleted, "
            f"{summary['unchanged']:,} unchanged ({_human(summary['bytes_written'])} written)"
        )

    _emit(args, summary, lines)
    return EXIT_OK


def downsample(values: Any, width: int) -> Any:
    """Min/max per bucket: keeps every spike visible when millions of points become pixels."""
    import numpy as np

    n = len(values)
    if n <= 2 * width:
        return np.arange(n), values
    edges = np.linspace(0, n, width + 1).astype(np.int64)
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        chunk = values[lo:hi]
        i_min, i_max = int(np.argmin(chunk)), int(np.argmax(chunk))
        for i in sorted({i_min, i_max}):
            xs.append(lo + i)
            ys.append(chunk[i])
    return np.array(xs), np.array(ys)


def cmd_plot(args: argparse.Namespace) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise _Missing("plot needs matplotlib: pip install matplotlib") from None
    cv, col = _column(args)
    if col._width is None or col.dtype.startswith(("bytes", "str")):
        cv.close()
        raise _Usage(f"column {args.name!r} of dtype {col.dtype} is not numeric")
    values = col.to_numpy().astype("float64")
    cv.close()
    xs, ys = downsample(values, args.width)
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ax.plot(xs, ys, linewidth=0.8)
    ax.set_title(f"{args.name} ({len(values):,} points)")
    ax.set_xlabel("index")
    ax.grid(alpha=0.3)
    out = args.output or f"{args.name}.png"
    fig.tight_layout()
    fig.savefig(out)
    _emit(args, {"output": out, "points": len(values)}, lambda: iter([f"wrote {out}"]))
    return EXIT_OK


class _Missing(Exception):
    """An optional dependency or input is missing (exit 1)."""


class _Usage(Exception):
    """The command makes no sense for this input (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ambervault", description="Inspect and move data in ambervault files."
    )
    parser.add_argument("--version", action="version", version=f"ambervault {__version__}")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--quiet", "-q", action="store_true", help="no progress or status lines")
    common = argparse.ArgumentParser(add_help=False, parents=[output])
    common.add_argument("--table", default="kvault", help="key-value table (default: kvault)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        p.add_argument("file", metavar="FILE", help="vault file")
        return p

    add("info", cmd_info, "tables, keys, bytes, columns, format version, WAL size")
    p = add("ls", cmd_ls, "list keys (bytewise order)")
    p.add_argument("--prefix", help="only keys starting with this")
    p.add_argument("--limit", type=int, help="at most this many keys")
    p.add_argument("--long", "-l", action="store_true", help="show size, version and update time")
    p = add("get", cmd_get, "write a value to a file or stdout (hex:... for byte keys)")
    p.add_argument("key")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p = add("put", cmd_put, "store a file (or - for stdin) under a key, streamed")
    p.add_argument("key")
    p.add_argument("path", metavar="PATH|-")
    p = add("rm", cmd_rm, "delete a key")
    p.add_argument("key")
    p = add("import", cmd_import, "store every file of a folder tree; keys are relative paths")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--prefix", help="prepended to every key")
    p = add("export", cmd_export, "write values out as files; keys become relative paths")
    p.add_argument("dest", metavar="DEST_DIR")
    p.add_argument("--prefix", help="only keys starting with this")
    add("cols", cmd_cols, "list columns with dtype and length")
    p = add("col", cmd_col, "print elements of a column")
    p.add_argument("name")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--head", type=int, help="the first N elements (default 20)")
    group.add_argument("--tail", type=int, help="the last N elements")
    p = add("col-export", cmd_col_export, "write a column as csv, npy or parquet")
    p.add_argument("name")
    p.add_argument("--format", choices=["csv", "npy", "parquet"], required=True)
    p.add_argument("-o", "--output", help="output file (default: NAME.FORMAT)")
    add("check", cmd_check, "integrity check plus the vault's own invariants (exit 1 on problems)")
    p = add("backup", cmd_backup, "consistent copy of the whole file, taken online")
    p.add_argument("dest", metavar="DEST")
    add("optimize", cmd_optimize, "reclaim free space and abandoned uploads (VACUUM)")
    p = add("plot", cmd_plot, "draw a numeric column to a PNG (needs matplotlib)")
    p.add_argument("name")
    p.add_argument("-o", "--output", help="PNG file (default: NAME.png)")
    p.add_argument("--width", type=int, default=2000, help="points kept after downsampling")
    p = add(
        "bundle-export", cmd_bundle_export, "write the table's keys to a self-contained, checksummed bundle"
    )
    p.add_argument("out", metavar="OUT", help="bundle file to create")
    p.add_argument("--prefix", help="only keys starting with this (hex:... for bytes)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--branch", help="export this branch of the table (default: main)")
    p = sub.add_parser(
        "bundle-validate",
        parents=[output],
        help="recompute a bundle's checksums and digests (exit 1 if it does not validate)",
        description="Recompute every checksum and the root digest of a bundle and compare them "
        "with its manifest. Only reads the bundle.",
    )
    p.set_defaults(func=cmd_bundle_validate)
    p.add_argument("bundle", metavar="BUNDLE", help="the bundle file")
    p = add(
        "bundle-import",
        cmd_bundle_import,
        "validate a bundle, then make the table's keys under its prefix equal to it (one transaction)",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="the bundle file")
    p.add_argument(
        "--as-branch", help="import into a new branch of this name, forked from main (then diff and merge)"
    )
    p = sub.add_parser(
        "migrate",
        parents=[output],
        help="copy a kohakuvault 1.1.0 file into a new ambervault file",
        description="Copy a kohakuvault 1.1.0 file into a new ambervault file: every key-value "
        "table (values decoded into typed values) and every column. OLD is only read; NEW must "
        "not exist.",
    )
    p.set_defaults(func=cmd_migrate)
    p.add_argument("old", metavar="OLD", help="the kohakuvault file")
    p.add_argument("new", metavar="NEW", help="the ambervault file to create")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also copy pickle-encoded values (never unpickled; the new vault needs "
        "allow_pickle=True to read them)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``ambervault`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NotFound as e:
        print(f"ambervault: not found: {e.args[0] if e.args else e}", file=sys.stderr)
        return EXIT_MISSING
    except _Missing as e:
        print(f"ambervault: {e}", file=sys.stderr)
        return EXIT_MISSING
    except BundleError as e:
        print(f"ambervault: bundle rejected: {e}", file=sys.stderr)
        return EXIT_MISSING
    except _Usage as e:
        print(f"ambervault: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head`: not an error
        return EXIT_OK
    except (VaultError, OSError) as e:
        print(f"ambervault: error: {e}", file=sys.stderr)
        return EXIT_VAULT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
