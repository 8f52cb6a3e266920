"""Message: the builder, its keyword arguments, and what a bad argument gets (a TypeError or
ValueError naming it, raised before any C call; never a crash of the interpreter)."""

import email
import email.policy

import pytest

import emailsession as es


def parse(message):
    return email.message_from_bytes(message.to_mime(), policy=email.policy.default)


def test_keyword_arguments_build_the_message(tmp_path):
    report = tmp_path / "report.csv"
    report.write_bytes(b"a,b\r\n1,2\r\n")
    m = es.Message(sender="Me <me@example.org>", to=["ada@example.org", "Bob <bob@example.org>"],
                   cc="carl@example.org", bcc=["hidden@example.org"],
                   reply_to="replies@example.org", subject="Hello", text="Hi Ada!\n",
                   html="<p>Hi Ada!</p>", attachments=[report, ("notes.txt", b"n\x00tes")],
                   headers={"X-Tag": "t1"}, priority=es.PRIORITY_HIGH)
    parsed = parse(m)
    assert parsed["From"] == "Me <me@example.org>"
    assert parsed["To"] == "ada@example.org, Bob <bob@example.org>"
    assert parsed["Cc"] == "carl@example.org" and parsed["Bcc"] is None
    assert parsed["Reply-To"] == "replies@example.org" and parsed["X-Tag"] == "t1"
    assert parsed.get_body(("plain",)).get_content() == "Hi Ada!\r\n"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hi Ada!</p>"
    files = {p.get_filename(): p.get_payload(decode=True) for p in parsed.iter_attachments()}
    assert files == {"report.csv": b"a,b\r\n1,2\r\n", "notes.txt": b"n\x00tes"}
    assert m.id > 0 and m.id != es.Message().id


def test_builder_methods_chain():
    m = es.Message().set_from("me@example.org").add_to("a@example.org, b@example.org") \
        .set_subject("s").set_text_body("t").set_in_reply_to("<x@y>").add_reference("<x@y>")
    parsed = parse(m)
    assert parsed["To"] == "a@example.org, b@example.org"
    assert parsed["In-Reply-To"] == "<x@y>" and parsed["References"] == "<x@y>"


def test_from_has_two_spellings_but_not_both():
    assert parse(es.Message(from_="me@example.org"))["From"] == "me@example.org"
    with pytest.raises(TypeError, match="sender or as from_, not both"):
        es.Message(sender="a@example.org", from_="b@example.org")


def test_unicode_subject_and_attachment_names():
    m = es.Message(sender="me@example.org", to="you@example.org", subject="Grüße ✉ 日本",
                   text="Ça va ?\n", attachments=[("résumé ✓.txt", b"abc", "text/plain")])
    parsed = parse(m)
    assert parsed["Subject"] == "Grüße ✉ 日本"
    assert parsed.get_body(("plain",)).get_content() == "Ça va ?\r\n"
    (part,) = parsed.iter_attachments()
    assert part.get_filename() == "résumé ✓.txt" and part.get_content() == "abc"


@pytest.mark.parametrize("kwargs, error, text", [
    ({"to": 5}, TypeError, "to must be a str or a list of str, not int"),
    ({"to": [b"a@b"]}, TypeError, r"to\[0\] must be a str, not bytes"),
    ({"cc": ["ok@example.org", None]}, TypeError, r"cc\[1\] must be a str, not NoneType"),
    ({"sender": 3.5}, TypeError, "sender must be a str, not float"),
    ({"subject": b"bytes"}, TypeError, "subject must be a str, not bytes"),
    ({"subject": "a\r\nBcc: victim@example.org"}, ValueError,
     "subject contains a line break"),
    ({"to": "a@example.org\nBcc: x@example.org"}, ValueError, "to contains a line break"),
    ({"sender": "me@exa\0mple.org"}, ValueError, "sender contains a NUL character"),
    ({"text": "body\0tail"}, ValueError, "text contains a NUL character"),
    ({"html": "\ud800"}, ValueError, "html is not valid Unicode text"),
    ({"attachments": "file.txt"}, TypeError, "attachments must be a list, not str"),
    ({"attachments": [42]}, TypeError, "path must be a path"),
    ({"attachments": [("n.txt",)]}, ValueError, "an attachment tuple is"),
    ({"attachments": [("n.txt", "text, not bytes")]}, TypeError,
     "data must be bytes-like, not str"),
    ({"headers": {"X-A": 1}}, TypeError, "value must be a str, not int"),
    ({"priority": "high"}, TypeError, "priority must be an int, not str"),
    ({"priority": 9}, ValueError, "priority must be between 0 and 5, not 9"),
])
def test_bad_arguments_are_named(kwargs, error, text):
    with pytest.raises(error, match=text):
        es.Message(**kwargs)


def test_bad_method_arguments():
    m = es.Message()
    with pytest.raises(TypeError, match="address must be a str, not NoneType"):
        m.set_from(None)
    with pytest.raises(TypeError, match="on must be a bool, not int"):
        m.set_disposition_notification(1)
    with pytest.raises(TypeError, match="exactly one of path and data"):
        m.add_inline("logo@x", "image/png")
    with pytest.raises(TypeError, match="data must be bytes-like, not list"):
        m.add_attachment_data([1, 2], "x.bin")
    with pytest.raises(ValueError, match="name contains a line break"):
        m.add_attachment_data(b"x", "a\nb.txt")


def test_what_the_library_refuses_is_an_error_and_a_value_error(tmp_path):
    with pytest.raises(es.InvalidArgumentError) as info:
        es.Message(to="not an address")
    e = info.value
    assert isinstance(e, ValueError) and isinstance(e, es.Error)
    assert e.code == es.EINVAL and e.name == "EMAIL_EINVAL" and e.status == 0
    assert "not an address" in e.text
    with pytest.raises(es.Error) as info:
        es.Message().add_attachment_file(tmp_path / "missing.pdf")
    assert info.value.code == es.EIO and "missing.pdf" in info.value.text


def test_a_charset_that_cannot_carry_the_text():
    m = es.Message(sender="me@example.org", to="you@example.org", subject="日本")
    m.set_charsets(es.MAIL_MODE_ISO88591, es.MAIL_MODE_ISO88591)
    with pytest.raises(es.InvalidArgumentError) as info:
        m.to_mime()
    assert info.value.code == es.ECHARSET
