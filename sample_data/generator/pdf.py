"""Hand-assembled PDF 1.4 (Helvetica, WinAnsiEncoding, no compression)."""

from __future__ import annotations

import hashlib
import unicodedata


# --------------------------------------------------------------------------
# PDF (hand-assembled, PDF 1.4, Helvetica + WinAnsiEncoding, no compression)
# --------------------------------------------------------------------------
def pdf_text(s: str) -> bytes:
    out = bytearray(b"(")
    for b in s.encode("cp1252"):
        if b in (0x28, 0x29, 0x5C):
            out += b"\\" + bytes([b])
        elif b < 0x20 or b > 0x7E:
            out += b"\\%03o" % b
        else:
            out.append(b)
    return bytes(out + b")")


def pdf_info_string(s: str) -> bytes:
    return b"<FEFF" + s.encode("utf-16-be").hex().upper().encode() + b">"


# Helvetica advance widths (Adobe AFM, 1/1000 em) for ASCII 32..126.
_HELV = [
    278,
    278,
    355,
    556,
    556,
    889,
    667,
    191,
    333,
    333,
    389,
    584,
    278,
    333,
    278,
    278,
    556,
    556,
    556,
    556,
    556,
    556,
    556,
    556,
    556,
    556,
    278,
    278,
    584,
    584,
    584,
    556,
    1015,
    667,
    667,
    722,
    722,
    667,
    611,
    778,
    722,
    278,
    500,
    667,
    556,
    833,
    722,
    778,
    667,
    778,
    722,
    667,
    611,
    722,
    667,
    944,
    667,
    667,
    611,
    278,
    278,
    278,
    469,
    556,
    333,
    556,
    556,
    500,
    556,
    556,
    278,
    556,
    556,
    222,
    222,
    500,
    222,
    833,
    556,
    556,
    556,
    556,
    333,
    500,
    278,
    556,
    500,
    722,
    500,
    500,
    500,
    334,
    260,
    334,
    584,
]
_HELV_EXTRA = {"«": 556, "»": 556, "€": 556, "—": 1000, "–": 556, "’": 222, "×": 584, "…": 1000}


def text_width(s: str, size: float, bold: bool = False) -> float:
    total = 0
    for ch in s:
        if ch in _HELV_EXTRA:
            total += _HELV_EXTRA[ch]
            continue
        base = unicodedata.normalize("NFKD", ch)[:1] or " "
        o = ord(base)
        total += _HELV[o - 32] if 32 <= o <= 126 else 600
    return total * size / 1000 * (1.08 if bold else 1.0)


def wrap(text: str, max_width: float, size: float = 11) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        cand = f"{cur} {w}" if cur else w
        if cur and text_width(cand, size) > max_width:
            lines.append(cur)
            cur = w
        else:
            cur = cand
    if cur:
        lines.append(cur)
    return lines


def page_stream(title: str | None, blocks, footer: str) -> bytes:
    """blocks: list of (kind, text); kind in h, p, item."""
    ops = [b"BT"]
    y = 790
    left = 56

    def line(font, size, x, yy, s):
        ops.append(b"/%s %d Tf 1 0 0 1 %d %d Tm %s Tj" % (font, size, x, yy, pdf_text(s)))

    if title:
        assert text_width(title, 20, bold=True) < 483, title
        line(b"F2", 20, left, y, title)
        y -= 34
    for kind, text in blocks:
        if kind == "h":
            y -= 8
            line(b"F2", 13, left, y, text)
            y -= 20
        elif kind == "item":
            first = True
            for ln in wrap(text, 483 - 26):
                if first:
                    line(b"F1", 11, left, y, "[  ]")
                line(b"F1", 11, left + 26, y, ln)
                first = False
                y -= 15
            y -= 3
        else:
            for ln in wrap(text, 483):
                line(b"F1", 11, left, y, ln)
                y -= 15
            y -= 6
        if y < 80:
            raise ValueError("page overflow")
    line(b"F1", 8, left, 40, footer)
    ops.append(b"ET")
    # thin rule under the title
    ops.append(b"0.6 w 56 772 m 539 772 l S" if title else b"")
    return b"\n".join(o for o in ops if o) + b"\n"


def build_pdf(title: str, pages: list[bytes]) -> bytes:
    objs: list[bytes] = []
    n_pages = len(pages)
    page_ids = [5 + 2 * i for i in range(n_pages)]
    info_id = 5 + 2 * n_pages
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % i for i in page_ids)
        + b"] /Count %d >>" % n_pages
    )
    objs.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    objs.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
    )
    for i, content in enumerate(pages):
        objs.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>"
            % (page_ids[i] + 1)
        )
        objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream")
    objs.append(
        b"<< /Title " + pdf_info_string(title) + b" /Author (launchkit sample data)"
        b" /Producer (launchkit sample_data/generate.py) /CreationDate (D:20260301090000Z) >>"
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n" % (len(objs) + 1)
    out += b"0000000000 65535 f \n"
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    doc_id = hashlib.md5(title.encode("utf-8")).hexdigest().upper().encode()
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R /ID [<%s> <%s>] >>\n" % (
        len(objs) + 1,
        info_id,
        doc_id,
        doc_id,
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)
