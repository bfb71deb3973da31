"""Files in a question: `bot.files` (what is text, decoding, PDFs, quoting) and /ask with files
through the core (a real store, the TokModel stand-in over HTTP, a recording platform)."""

from __future__ import annotations

import io
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from bot.core import Core
from bot.domain import Attachment, TurnRole
from bot.files import (
    FileText,
    NotRead,
    cut_text,
    decode_text,
    line_count,
    question_with_files,
    quoted,
    read_file,
    worth_downloading,
)
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY
from tests.platform import KEY, RecordingReplier, message

CHAT = "/v1/chat/completions"


def pdf_bytes(pages: list[str], password: str | None = None) -> bytes:
    """A real PDF with one line of Helvetica text per page (pypdf writes it)."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    font_ref = writer._add_object(font)
    for text in pages:
        page = writer.add_blank_page(612, 792)
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
        fonts = DictionaryObject({NameObject("/F1"): font_ref})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    if password is not None:
        writer.encrypt(password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- bot.files, pure ---------------------------------------------------------------------------


def test_what_is_worth_downloading() -> None:
    assert worth_downloading("app.log", "text/plain")
    assert worth_downloading("main.py", "application/octet-stream")  # the name says text
    assert worth_downloading("data", "application/json; charset=utf-8")
    assert worth_downloading("report.pdf", None)
    assert worth_downloading("Makefile", None)  # unknown: fetched and sniffed
    assert worth_downloading("blob", "application/octet-stream")
    assert not worth_downloading("backup.zip", "application/zip")
    assert not worth_downloading("slides.pptx", None)
    assert not worth_downloading("talk.mp4", "video/mp4")
    assert not worth_downloading("sheet", "application/vnd.ms-excel")


def test_decoding_utf8_boms_and_a_windows_fallback() -> None:
    assert decode_text("naïve café\r\nsecond\r\n".encode()) == "naïve café\nsecond\n"
    assert decode_text(b"\xef\xbb\xbfwith a BOM") == "with a BOM"
    assert decode_text("UTF-16 ✓".encode("utf-16")) == "UTF-16 ✓"
    assert decode_text("UTF-32 ✓".encode("utf-32")) == "UTF-32 ✓"
    assert decode_text("Größe: 5 €".encode("cp1252")) == "Größe: 5 €"  # not UTF-8
    # Terminal colours in CI logs are dropped; the words stay.
    assert decode_text(b"\x1b[31mERROR\x1b[0m boom") == "ERROR boom"


def test_binary_is_sniffed_whatever_the_name() -> None:
    assert decode_text(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256))) is None  # a NUL
    no_nul = bytes(b for b in range(1, 32) if b not in b"\t\n\r\x0b\x0c\x1b") * 20
    assert decode_text(no_nul + b"some words") is None  # control characters
    assert isinstance(read_file("notes.txt", b"PK\x03\x04\x00\x00" * 100, 1000), NotRead)


def test_a_text_file_is_counted_cut_and_quoted() -> None:
    text = "".join(f"line {i}\n" for i in range(1, 1001))  # 8,893 characters
    read = read_file("app.log", text.encode(), 500)
    assert isinstance(read, FileText)
    assert read.extent == "1,000 lines" and read.text.endswith("\n") and len(read.text) <= 500
    assert read.cut == f"the first {len(read.text)} of {len(text):,} characters"
    block = quoted(read)
    assert block.startswith("📎 app.log (1,000 lines):\n```\nline 1\n")
    assert block.endswith(f"```\n(cut: this is {read.cut})")
    whole = read_file("a.md", b"one line, no newline", 500)
    assert isinstance(whole, FileText) and whole.extent == "1 line" and whole.cut is None
    assert line_count("") == 0 and line_count("a\nb") == 2 and line_count("a\nb\n") == 2
    assert cut_text("x" * 10, 4) == ("xxxx", True)  # no line break near: cut mid-line


def test_a_file_with_fences_cannot_close_its_quote() -> None:
    inside = "```\nnot the end\n````"
    block = quoted(FileText("README.md", inside, "3 lines"))
    assert block.splitlines()[1] == "`````" and block.endswith("\n`````")
    assert question_with_files("why?", [FileText("a.txt", "x", "1 line")]) == (
        "why?\n\n📎 a.txt (1 line):\n```\nx\n```"
    )


def test_pdf_pages_are_read_with_their_numbers() -> None:
    read = read_file("report.pdf", pdf_bytes(["Revenue grew", "", "Costs fell"]), 10_000)
    assert isinstance(read, FileText)
    assert read.extent == "3 pages" and read.cut is None
    assert read.text == "[page 1]\nRevenue grew\n\n[page 3]\nCosts fell"
    cut = read_file("long.pdf", pdf_bytes([f"Page text {i}" for i in range(1, 6)]), 40)
    assert isinstance(cut, FileText) and cut.text.startswith("[page 1]\nPage text 1")
    assert cut.cut is not None and cut.cut.startswith("pages 1–") and "of 5" in cut.cut


def test_pdfs_that_cannot_be_read_get_one_line() -> None:
    locked = read_file("secret.pdf", pdf_bytes(["hidden"], password="s3cret"), 1000)
    assert isinstance(locked, NotRead)
    assert locked.reason == "🔒 secret.pdf is protected by a password; I couldn't read it."
    # An empty password only restricts printing and the like: such a PDF is read.
    opened = read_file("open.pdf", pdf_bytes(["visible"], password=""), 1000)
    assert isinstance(opened, FileText) and "visible" in opened.text
    broken = read_file("broken.pdf", b"%PDF-1.7\n garbage \x00\x01", 1000)
    assert isinstance(broken, NotRead) and "may be damaged" in broken.reason
    scanned = read_file("scan.pdf", pdf_bytes([""]), 1000)
    assert isinstance(scanned, NotRead) and "no text I can read" in scanned.reason


@given(st.binary(max_size=2000), st.sampled_from(["a.txt", "b.pdf", "c", "d.log"]))
def test_any_bytes_are_read_or_refused_in_one_line_never_raised(data: bytes, name: str) -> None:
    found = read_file(name, data, 500)
    if isinstance(found, NotRead):
        assert name in found.reason and "\n" not in found.reason
    else:
        assert len(found.text) <= 500


# (A leading U+FEFF is a byte-order mark; U+FFFD counts as undecodable.)
@given(
    st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufeff\ufffd"))
)
def test_printable_utf8_text_comes_back_as_it_was(text: str) -> None:
    assert decode_text(text.encode()) == text


# -- /ask with files, through the core ----------------------------------------------------------


async def test_ask_reads_files_into_the_question_and_says_what_it_did_not_read(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> None:
    replier = RecordingReplier()
    log_text = "".join(f"12:00:{i:02d} worker ERROR timeout\n" for i in range(60))
    files = {
        "core.dump": (b"\x00\x01\x02binary" * 50, "application/octet-stream"),
        "archive.zip": (b"PK\x03\x04", "application/zip"),
        "worker.log": (log_text.encode(), "text/plain"),
        "report.pdf": (pdf_bytes(["Q3 revenue grew"]), "application/pdf"),
    }
    attachments = []
    for name, (data, ctype) in files.items():
        replier.files[name] = data
        attachments.append(Attachment(name, ctype, len(data)))
    settings = make_settings(TOKBOT_MAX_FILE_CHARS="1000")
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        await core.handle(message("ask", "why?", attachments=tuple(attachments)), replier)
        asked = [r.json for r in fake.requests if r.path == CHAT and r.json][-1]["messages"][-1]
        history = await core.store.history(KEY)
    question = asked["content"]
    assert question.startswith("Alice: why?\n\n📎 worker.log (60 lines):\n```\n12:00:00 worker")
    assert "(cut: this is the first" in question  # 1,800 characters, cut to the limit
    assert "report.pdf" not in question  # the log filled the limit
    answer, notes = replier.texts
    assert "Files I saw: worker.log." in answer  # the stand-in echoes the files it was sent
    assert notes.splitlines() == [
        "📎 I didn't read core.dump: it isn't text (I read text files, source code, logs and "
        "PDFs).",
        "📎 I didn't read archive.zip: I read text files, source code, logs and PDFs.",
        "📎 worker.log is long: I read the first 990 of 1,800 characters.",
        "📎 I didn't read report.pdf: the files before it filled the limit.",
    ]
    assert "core.dump" not in question and "archive.zip" not in question
    # The question is stored as it was sent: a follow-up still sees the file.
    assert history[0].role is TurnRole.USER and history[0].content == question.removeprefix(
        "Alice: "
    )


async def test_a_file_without_a_question_is_the_question_and_binary_alone_is_refused(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    replier.files["report.pdf"] = pdf_bytes(["Q3 revenue grew"])
    report = Attachment("report.pdf", "application/pdf", len(replier.files["report.pdf"]))
    await core.handle(message("ask", "", attachments=(report,)), replier)
    asked = [r.json for r in fake.requests if r.path == CHAT and r.json][-1]["messages"][-1]
    assert asked["content"] == "Alice: 📎 report.pdf (1 page):\n```\n[page 1]\nQ3 revenue grew\n```"
    assert "Files I saw: report.pdf." in replier.last
    replier.files["blob.dat"] = b"\x00" * 100
    blob = Attachment("blob.dat", None, 100)
    await core.handle(message("ask", "", attachments=(blob,)), replier)
    assert replier.last.startswith("📎 I didn't read blob.dat: it isn't text")
    assert replier.order[-1] in replier.private  # a refusal: only the asker sees it
    assert len([r for r in fake.requests if r.path == CHAT]) == 1
