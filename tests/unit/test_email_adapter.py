"""The e-mail adapter's parts that need no network: SendGrid's multipart form, quoted history, subjects,
composed messages, and the refusal to talk SMTP in clear."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from hypothesis import given
from hypothesis import strategies as st

from app.adapters.base import InboundMessage, InboundRequest, OutboundFile, OutboundMessage, SignatureError
from app.adapters.email_smtp import EmailAdapter, load_config, subject_for, without_quoted_history
from tests.fakes.sendgrid import FakeInboundParse

SENDGRID = FakeInboundParse()
CONFIG = {
    "from_address": "support@shop.example",
    "smtp_host": "127.0.0.1",
    "inbound_public_key": SENDGRID.public_key,
}
names = st.text(
    st.characters(min_codepoint=48, max_codepoint=122, categories=["L", "N"]), min_size=1, max_size=20
)


def parsed(body: bytes, headers: dict[str, str]) -> InboundMessage:
    [message] = EmailAdapter().parse(InboundRequest(body, headers, "https://relay.test/x"), CONFIG)
    assert isinstance(message, InboundMessage)
    return message


@given(content=st.binary(max_size=5000), name=names, text=st.text(max_size=300))
def test_any_file_and_any_text_come_through_the_form_unchanged(content: bytes, name: str, text: str) -> None:
    body, headers, message_id = SENDGRID.email(
        sender="Ada <ada@mail.example>",
        to="support@shop.example",
        subject="Hello",
        text=text,
        files=[(f"{name}.bin", "application/octet-stream", content)],
    )
    message = parsed(body, headers)
    [attachment] = message.attachments
    assert (attachment.friendly_name, attachment.content, attachment.size) == (
        f"{name}.bin",
        content,
        len(content),
    )
    assert message.event_id == message_id.strip("<>")
    assert message.text == without_quoted_history(text)
    EmailAdapter().verify(InboundRequest(body, headers, "https://relay.test/x"), CONFIG)


@given(garbage=st.binary(max_size=2000))
def test_a_body_that_is_not_a_form_is_a_value_error_never_a_crash(garbage: bytes) -> None:
    headers = {"content-type": "multipart/form-data; boundary=xYzZY"}
    try:
        EmailAdapter().parse(InboundRequest(garbage, headers, "u"), CONFIG)
    except ValueError:
        pass


@given(text=st.text(max_size=500))
def test_cutting_the_quoted_history_only_ever_keeps_a_prefix(text: str) -> None:
    kept = without_quoted_history(text)
    assert text.replace("\r\n", "\n").strip().startswith(kept)


def test_the_quoted_history_is_cut_in_english_and_french_and_at_trailing_quotes() -> None:
    assert (
        without_quoted_history("Yes please\n\nOn Tue, 24 Nov 2026, Shop wrote:\n> Shall we?") == "Yes please"
    )
    assert without_quoted_history("Oui\n\nLe mar. 24 nov. 2026, Shop a écrit :\n> Ok ?") == "Oui"
    assert without_quoted_history("Fine\n> earlier\n>\n> more") == "Fine"
    assert without_quoted_history("> a quote\nmy answer under it") == "> a quote\nmy answer under it"


@given(title=st.text(max_size=80))
def test_a_reply_subject_never_stacks_re(title: str) -> None:
    message = OutboundMessage("m", "c", "t", "ada@mail.example", None, "hi", reply_to_title=title)
    subject = subject_for(message, "Your message")
    assert not subject.lower().startswith("re: re:") or title.lower().startswith("re: re:")
    assert subject == "Your message" or title.strip() in subject


def test_a_composed_reply_is_threaded_and_carries_its_files() -> None:
    message = OutboundMessage(
        message_id="5b0c",
        channel_id="c",
        thread_id="t",
        recipient_id="ada@mail.example",
        recipient_name="Ada",
        text="Here it is",
        files=(OutboundFile("label.pdf", "application/pdf", b"%PDF"),),
        reply_to_provider_message_id="abc@mail.example",
        reply_to_title="Broken kettle",
    )
    mail = EmailAdapter().compose(load_config(CONFIG), message)
    assert (mail["Message-ID"], mail["In-Reply-To"], mail["Subject"]) == (
        "<5b0c@shop.example>",
        "<abc@mail.example>",
        "Re: Broken kettle",
    )
    assert mail["To"] == "Ada <ada@mail.example>"
    [file] = list(mail.iter_attachments())
    assert file.get_content() == b"%PDF"


class _Accept:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        return "250 OK"


async def test_a_server_without_starttls_gets_no_mail_and_no_password(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plain = Controller(_Accept(), hostname="127.0.0.1", port=port)
    plain.start()
    try:
        config = {**CONFIG, "smtp_port": port, "smtp_username": "relay", "smtp_password": "secret-pass"}
        result = await EmailAdapter().send(
            config, OutboundMessage("m", "c", "t", "ada@mail.example", None, "hi")
        )
    finally:
        plain.stop()
    assert not result.ok
    assert not result.permanent  # an admin can fix the server; the message waits
    assert "STARTTLS extension not supported" in (result.error or "")


@given(name=st.text(max_size=60), title=st.text(max_size=120))
def test_no_outside_text_can_add_a_header(name: str, title: str) -> None:
    message = OutboundMessage(
        "m1",
        "c",
        "t",
        "ada@mail.example",
        name,
        "hi",
        reply_to_provider_message_id="a\r\nBcc: x@evil.example",
        reply_to_title=title,
    )
    mail = EmailAdapter().compose(load_config(CONFIG), message)
    assert "Bcc" not in mail
    assert all("\n" not in str(value) and "\r" not in str(value) for value in mail.values())


hostile = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)


@given(headers=hostile, html=hostile, charsets=hostile, sender=hostile, info=hostile)
def test_hostile_fields_are_a_value_error_or_a_message_never_a_crash(
    headers: str, html: str, charsets: str, sender: str, info: str
) -> None:
    body, signed, _ = SENDGRID.email(
        sender="ada@mail.example",
        to="support@shop.example",
        subject="x",
        text="",
        fields={
            "headers": headers,
            "html": html,
            "charsets": charsets,
            "from": sender,
            "attachment-info": info,
        },
    )
    try:
        [message] = EmailAdapter().parse(InboundRequest(body, signed, "u"), CONFIG)
    except ValueError:
        return
    assert isinstance(message, InboundMessage)
    assert len(message.sender_id) <= 200
    assert len(message.event_id or "") <= 200


def test_the_known_troublemakers_are_handled() -> None:
    for fields in (
        {"headers": "Message-ID: <"},
        {"html": "<![foo]> hello", "text": ""},
        {"charsets": '{"text": "x-no-such-charset"}'},
        {"headers": "Message-ID: <" + "a" * 300 + "@mail.example>"},
    ):
        body, signed, _ = SENDGRID.email(
            sender="Ada <ada@mail.example>", to="support@shop.example", subject="x", text="hi", fields=fields
        )
        try:
            [message] = EmailAdapter().parse(InboundRequest(body, signed, "u"), CONFIG)
        except ValueError:
            continue
        assert isinstance(message, InboundMessage)
        assert len(message.event_id or "") <= 200


def test_a_sender_neither_spf_nor_dkim_vouches_for_is_flagged_to_the_agent() -> None:
    body, signed, _ = SENDGRID.email(
        sender="ceo@bank.example", to="support@shop.example", subject="Urgent", text="Wire it", verified=False
    )
    assert (
        parsed(body, signed).text
        == "[Unverified sender: neither SPF nor DKIM passed for bank.example]\nWire it"
    )
    body, signed, _ = SENDGRID.email(
        sender="ceo@bank.example",
        to="support@shop.example",
        subject="Urgent",
        text="Wire it",
        fields={"SPF": "fail", "dkim": "{@bank.example : pass}"},
    )
    assert parsed(body, signed).text == "Wire it"


@pytest.mark.parametrize("stamp", ["²", "1" * 5000, "-5", " 17"])
def test_an_odd_timestamp_is_a_signature_error_never_a_crash(stamp: str) -> None:
    body, signed, _ = SENDGRID.email(
        sender="ada@mail.example", to="support@shop.example", subject="x", text="y"
    )
    headers = {**signed, "x-twilio-email-event-webhook-timestamp": stamp}
    with pytest.raises(SignatureError):
        EmailAdapter().verify(InboundRequest(body, headers, "u"), CONFIG)
