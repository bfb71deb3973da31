"""Reading attached files into a question: which files hold text, how to decode them, the text
of a PDF's pages, and how a file is quoted in the prompt ("📎 name (N lines): …").

Pure functions (the handler downloads; these read). The content decides, not the name: a
".txt" full of NUL bytes is refused, a "Makefile" without an extension is read."""

from __future__ import annotations

import codecs
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pypdf import PasswordType, PdfReader

from bot.media import extension

log = logging.getLogger(__name__)

#: Read as text whatever the platform calls them (many send source code as octet-stream).
TEXT_EXTENSIONS = frozenset(
    """txt text log out err md markdown rst adoc org csv tsv json jsonl ndjson geojson yaml yml
    toml ini cfg conf config env properties xml html htm xhtml css scss sass less svg
    py pyi ipynb js mjs cjs ts tsx jsx vue svelte java kt kts scala groovy gradle go rs c h cc
    cpp cxx hpp hh cs fs vb rb php pl pm swift m mm r jl lua dart ex exs erl hrl hs ml mli clj
    cljs el lisp scm sh bash zsh fish ps1 psm1 bat cmd sql graphql gql proto thrift tf tfvars
    hcl nix dockerfile mk cmake diff patch srt vtt tex bib lock gitignore gitattributes
    editorconfig pem crt csr pub asc""".split()
)
#: Known not to be text: not worth downloading (archives, office documents, media, programs).
BINARY_EXTENSIONS = frozenset(
    """zip gz tgz bz2 xz zst 7z rar tar jar war apk ipa exe dll so dylib bin iso dmg img msi
    deb rpm doc docx xls xlsx ppt pptx odt ods odp pages numbers key rtf epub mobi psd ai
    sketch fig mp4 mov avi mkv wmv m4v woff woff2 ttf otf eot class pyc o a obj wasm sqlite
    db parquet avro npy pkl heic tif tiff bmp ico""".split()
)
_TEXT_TYPES = frozenset(
    """application/json application/xml application/yaml application/x-yaml application/toml
    application/javascript application/x-javascript application/ecmascript application/x-sh
    application/x-shellscript application/sql application/x-sql application/csv
    application/x-ndjson application/x-python application/x-python-code application/x-ruby
    application/x-perl application/x-httpd-php application/x-tex application/graphql
    application/x-subrip""".split()
)
_BINARY_TYPE_PREFIXES = ("audio/", "video/", "font/", "image/", "application/vnd.")
_BINARY_TYPES = frozenset(
    """application/zip application/gzip application/x-gzip application/x-tar
    application/x-7z-compressed application/x-rar-compressed application/vnd.rar
    application/x-bzip2 application/x-xz application/zstd application/java-archive
    application/x-msdownload application/x-executable application/x-mach-binary
    application/x-sharedlib application/msword application/rtf application/epub+zip
    application/wasm application/x-sqlite3""".split()
)

#: Bytes looked at to tell text from binary (git looks at the first 8,000 for a NUL).
SNIFF_BYTES = 8000
#: More control characters than this share of the sniffed text: not text.
_CONTROL_SHARE = 0.05
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")
#: Terminal colours and cursor moves in CI logs (ECMA-48 CSI sequences): noise for a model.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
#: Byte-order marks, longest first (UTF-32 LE's starts with UTF-16 LE's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: A PDF with more pages than this is read up to here (each page costs time, text or not).
MAX_PDF_PAGES = 1000
#: What tokbot reads, for the lines that say a file was not read.
READABLE = "I read text files, source code, logs and PDFs"


@dataclass(frozen=True)
class FileText:
    """A file read for the question."""

    name: str
    #: The text as it goes into the question (cut to the limit).
    text: str
    #: How long the file is, for its heading: "12 lines", "3 pages".
    extent: str
    #: What was kept when the file was cut ("the first 60,000 of 250,000 characters"), or None.
    cut: str | None = None


@dataclass(frozen=True)
class NotRead:
    """A file that was not read, and the one line that tells the asker why."""

    name: str
    reason: str


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_pdf_name(filename: str, content_type: str | None) -> bool:
    return extension(filename) == "pdf" or _base_type(content_type) == "application/pdf"


def is_text_name(filename: str, content_type: str | None) -> bool:
    ctype = _base_type(content_type)
    return (
        extension(filename) in TEXT_EXTENSIONS
        or ctype.startswith("text/")
        or ctype in _TEXT_TYPES
        or ctype.endswith(("+json", "+xml", "+yaml"))
    )


def worth_downloading(filename: str, content_type: str | None) -> bool:
    """False for files whose name or type says they hold no text (archives, office documents,
    media): they are not fetched. Text, PDFs and anything unknown are fetched and sniffed."""
    if is_text_name(filename, content_type) or is_pdf_name(filename, content_type):
        return True
    ctype = _base_type(content_type)
    if ctype in _BINARY_TYPES or ctype.startswith(_BINARY_TYPE_PREFIXES):
        return False
    return extension(filename) not in BINARY_EXTENSIONS


def read_file(filename: str, data: bytes, max_chars: int) -> FileText | NotRead:
    """The file's text for the question, at most `max_chars` of it, or why it was not read."""
    if data.lstrip()[:5] == b"%PDF-" or extension(filename) == "pdf":
        return read_pdf(filename, data, max_chars)
    if not data.strip():
        return NotRead(filename, f"📎 {filename} is empty.")
    text = decode_text(data)
    if text is None:
        return NotRead(filename, f"📎 I didn't read {filename}: it isn't text ({READABLE}).")
    shown, cut = cut_text(text, max_chars)
    note = f"the first {len(shown):,} of {len(text):,} characters" if cut else None
    return FileText(filename, shown, _count(line_count(text), "line"), note)


def decode_text(data: bytes) -> str | None:
    """`data` as text (UTF-8, or UTF-16/32 with a byte-order mark, else Windows-1252, which
    takes any byte), with Windows line ends and terminal colours removed; None when it is
    binary (a NUL byte, or too many control characters, near the start)."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = data.decode(codec, errors="replace")
            break
    else:
        if b"\x00" in data[:SNIFF_BYTES]:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8: most likely a Windows editor's file.
            text = data.decode("cp1252", errors="replace")
    if _mostly_controls(text[:SNIFF_BYTES]):
        return None
    return _ANSI.sub("", text.replace("\r\n", "\n"))


def _mostly_controls(sample: str) -> bool:
    if not sample:
        return False
    odd = sum(
        1
        for ch in sample
        if ch == "\ufffd" or ch == "\x7f" or (ch < " " and ch not in _ALLOWED_CONTROLS)
    )
    return odd > len(sample) * _CONTROL_SHARE


def line_count(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def cut_text(text: str, max_chars: int) -> tuple[str, bool]:
    """At most `max_chars` of `text`, ended at a line break when one is near; True when cut."""
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    newline = head.rfind("\n")
    if newline >= max_chars * 0.8:
        head = head[: newline + 1]
    return head, True


def read_pdf(filename: str, data: bytes, max_chars: int) -> FileText | NotRead:
    """The text of each page (pypdf), headed "[page N]", until `max_chars` are reached."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _unlocked(reader):
            return NotRead(
                filename, f"🔒 {filename} is protected by a password; I couldn't read it."
            )
        total = len(reader.pages)
        parts: list[str] = []
        size, last, cut = 0, 0, False
        for number, page in enumerate(reader.pages, 1):
            if number > MAX_PDF_PAGES or size >= max_chars:
                cut = True
                break
            last = number
            text = (page.extract_text() or "").strip()
            if text:
                part, cut = cut_text(f"[page {number}]\n{text}", max_chars - size)
                parts.append(part)
                size += len(part) + 2
                if cut:
                    break
    except Exception as exc:  # pypdf raises many kinds on a damaged file, not only PdfReadError
        log.info("could not read a PDF: %s", type(exc).__name__)
        return NotRead(filename, f"📎 I couldn't read {filename} as a PDF: it may be damaged.")
    if not parts:
        return NotRead(
            filename, f"📎 {filename} has no text I can read (scanned pages are pictures)."
        )
    note = f"pages 1–{last} of {total}, up to {max_chars:,} characters" if cut else None
    return FileText(filename, "\n\n".join(parts), _count(total, "page"), note)


def _unlocked(reader: PdfReader) -> bool:
    """Many PDFs are encrypted with an empty password (to restrict printing, say): open those."""
    try:
        return reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except Exception:  # an algorithm pypdf (or its optional crypto library) cannot do
        return False


def quoted(file: FileText) -> str:
    """The file as it goes into the question: a heading, then its text in a code fence longer
    than any run of backticks inside it (CommonMark's rule), so the file cannot end it."""
    longest = max((len(run) for run in re.findall(r"`+", file.text)), default=0)
    fence = "`" * max(3, longest + 1)
    block = f"📎 {file.name} ({file.extent}):\n{fence}\n{file.text.rstrip()}\n{fence}"
    if file.cut is not None:
        block += f"\n(cut: this is {file.cut})"
    return block


def question_with_files(typed: str, files: Sequence[FileText]) -> str:
    """What was typed, then each file quoted."""
    return "\n\n".join([part for part in (typed, *map(quoted, files)) if part])


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
