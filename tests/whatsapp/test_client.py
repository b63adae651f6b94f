"""The WhatsApp client against the fake Graph API: what it sends and how it sorts Meta's errors."""

from __future__ import annotations

import logging
import pickle
import threading

import pytest

from wch.config import ConfigError, Settings
from wch.whatsapp import (
    ConfigurationError,
    NeedsTemplate,
    RecipientUnreachable,
    RetryLater,
    StopSending,
    WhatsAppClient,
    WhatsAppError,
    classify,
)
from wch.whatsapp.client import MissingSetting

TOKEN = "EAAtesttoken0123456789abcdefSECRET"


@pytest.fixture
def whatsapp(fake_graph):
    """A client of the fake Graph API, with short timeouts."""
    with WhatsAppClient(api_url=fake_graph.url, access_token=TOKEN, phone_number_id="1055",
                        catalog_id="777", timeout=(1, 0.5), pool_size=8) as client:
        yield client


def test_send_text_posts_the_cloud_api_shape_and_returns_the_wamid(whatsapp, fake_graph):
    wamid = whatsapp.send_text("+15550001111", "Your order shipped", callback_data="order:7:completed")

    [request] = fake_graph.messages()
    assert wamid.startswith("wamid.") and request.answer["messages"][0]["id"] == wamid
    assert request.path == "/v24.0/1055/messages"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.json == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+15550001111",
        "type": "text", "text": {"preview_url": False, "body": "Your order shipped"},
        "biz_opaque_callback_data": "order:7:completed",
    }


def test_send_template_fills_body_parameters(whatsapp, fake_graph):
    first = whatsapp.send_template("15550001111", "order_update", "en_US", ["Ana", "#42", "completed"])
    second = whatsapp.send_template("15550001111", "hello_world", "en_US")

    assert first != second
    sent = [r.json["template"] for r in fake_graph.messages()]
    assert sent[0] == {"name": "order_update", "language": {"code": "en_US"}, "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#42"},
                                        {"type": "text", "text": "completed"}]}]}
    assert sent[1] == {"name": "hello_world", "language": {"code": "en_US"}}


def test_items_batch_and_batch_status(whatsapp, fake_graph):
    answer = whatsapp.items_batch([{"method": "UPDATE", "data": {"id": "SKU-1", "availability": "in stock"}}])
    [handle] = answer["handles"]
    status = whatsapp.batch_status(handle)

    [batch] = fake_graph.batches()
    assert batch.path == "/v24.0/777/items_batch"
    assert batch.json["item_type"] == "PRODUCT_ITEM" and batch.json["requests"][0]["data"]["id"] == "SKU-1"
    assert status["data"][0]["handle"] == handle and status["data"][0]["status"] == "finished"
    assert fake_graph.received("batch_status")[0].query == {"handle": handle}


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (1, RetryLater), (2, RetryLater), (4, RetryLater), (17, RetryLater), (32, RetryLater), (613, RetryLater),
        (80007, RetryLater), (80014, RetryLater), (130429, RetryLater), (131000, RetryLater),
        (131016, RetryLater), (131056, RetryLater),
        (131047, NeedsTemplate),
        (131026, RecipientUnreachable),
        (131048, StopSending), (131049, StopSending), (368, StopSending), (131031, StopSending),
        (131042, StopSending),
        (100, ConfigurationError), (190, ConfigurationError), (200, ConfigurationError),
        (299, ConfigurationError), (10, ConfigurationError), (132000, ConfigurationError),
        (132012, ConfigurationError),
    ],
)
def test_graph_error_codes_become_the_error_a_job_acts_on(whatsapp, fake_graph, code, kind):
    fake_graph.fail(code=code, subcode=2494010, message=f"(#{code}) something")
    with pytest.raises(WhatsAppError) as raised:
        whatsapp.send_text("15550001111", "hi")
    error = raised.value
    assert type(error) is kind
    assert error.code == code and error.subcode == 2494010 and error.http_status == fake_graph.messages()[0].status
    assert error.fbtrace_id and error.fbtrace_id in str(error)
    assert f"WhatsApp API error {code}" in str(error)


def test_unknown_codes_are_a_plain_whatsapp_error(whatsapp, fake_graph):
    fake_graph.fail(code=131009)
    with pytest.raises(WhatsAppError) as raised:
        whatsapp.send_text("15550001111", "hi")
    assert type(raised.value) is WhatsAppError and raised.value.code == 131009


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_later(whatsapp, fake_graph, status):
    fake_graph.fail(status=status)
    with pytest.raises(RetryLater) as raised:
        whatsapp.items_batch([{"method": "DELETE", "data": {"id": "SKU-1"}}])
    assert raised.value.http_status == status


def test_an_unknown_path_is_a_plain_error(whatsapp, fake_graph):
    with pytest.raises(WhatsAppError) as raised:
        whatsapp._call("POST", "1055/nothing-here")  # the fake answers 404 with Graph error 803
    assert type(raised.value) is WhatsAppError and raised.value.http_status == 404


def test_rate_limit_keeps_retry_after(whatsapp, fake_graph):
    fake_graph.rate_limit(retry_after=7)
    with pytest.raises(RetryLater) as raised:
        whatsapp.send_text("15550001111", "hi")
    assert raised.value.http_status == 429 and raised.value.code == 130429 and raised.value.retry_after == 7.0


def test_timeout_is_retried_later_and_the_next_call_works(whatsapp, fake_graph):
    fake_graph.timeout(seconds=2)
    with pytest.raises(RetryLater, match="timed out"):
        whatsapp.send_text("15550001111", "hi")
    assert whatsapp.send_text("15550001111", "hi again").startswith("wamid.")


def test_connection_refused_is_retried_later(fake_graph):
    url = fake_graph.url
    fake_graph.stop()
    client = WhatsAppClient(api_url=url, access_token=TOKEN, phone_number_id="1055", timeout=(0.5, 0.5))
    with pytest.raises(RetryLater, match="unreachable") as raised:
        client.send_text("15550001111", "hi")
    assert raised.value.http_status is None and raised.value.code is None


def test_rules_for_one_recipient_leave_others_alone(whatsapp, fake_graph):
    fake_graph.fail(code=131026, recipient="15550009999", times=None)
    assert whatsapp.send_text("15550001111", "hi").startswith("wamid.")
    for _ in range(2):
        with pytest.raises(RecipientUnreachable):
            whatsapp.send_text("15550009999", "hi")
    assert [r.status for r in fake_graph.messages()] == [200, 400, 400]


def test_the_token_never_appears_in_errors_or_logs(fake_graph, caplog):
    caplog.set_level(logging.DEBUG)
    client = WhatsAppClient(api_url=fake_graph.url, access_token=TOKEN, phone_number_id="1055", timeout=(1, 0.5))
    fake_graph.fail(code=190, message=f"Invalid OAuth access token {TOKEN}")
    with pytest.raises(ConfigurationError) as raised:
        client.send_text("15550001111", "hi")
    assert TOKEN not in str(raised.value) and "[redacted]" in str(raised.value)
    assert TOKEN not in repr(raised.value)
    fake_graph.timeout(seconds=2)
    with pytest.raises(RetryLater) as raised:
        client.send_text("15550001111", "hi")
    assert TOKEN not in str(raised.value)
    assert TOKEN not in caplog.text


def test_errors_survive_pickling_with_their_attributes():
    error = classify(400, {"error": {"code": 131026, "message": "undeliverable", "fbtrace_id": "Ab"}})
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RecipientUnreachable and copy.code == 131026 and str(copy) == str(error)


def test_classify_copes_with_odd_payloads():
    assert type(classify(502, None)) is RetryLater
    assert type(classify(400, "nonsense")) is WhatsAppError
    assert type(classify(400, {"error": {"code": "131047"}})) is NeedsTemplate
    assert classify(400, {"code": 100, "message": "inner object"}).code == 100


def test_concurrent_sends_share_one_pool(whatsapp, fake_graph):
    fake_graph.slow(0.05)
    ids: list[str] = []
    lock = threading.Lock()

    def send(n):
        wamid = whatsapp.send_text(f"1555000{n:04d}", "hi")
        with lock:
            ids.append(wamid)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 32 == len(fake_graph.messages())


def test_missing_settings_name_the_variable(fake_graph):
    settings = Settings.from_env({"WHATSAPP_API_URL": fake_graph.url})
    with pytest.raises(ConfigError, match="WHATSAPP_ACCESS_TOKEN"):
        WhatsAppClient.from_settings(settings)
    settings = Settings.from_env({"WHATSAPP_API_URL": fake_graph.url, "WHATSAPP_ACCESS_TOKEN": TOKEN})
    client = WhatsAppClient.from_settings(settings)
    with pytest.raises(MissingSetting, match="WHATSAPP_PHONE_NUMBER_ID"):
        client.send_text("1555", "hi")
    with pytest.raises(ConfigurationError, match="WHATSAPP_CATALOG_ID"):
        client.items_batch([{"method": "DELETE", "data": {"id": "x"}}])
    assert fake_graph.received() == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WHATSAPP_API_URL": "ftp://graph"}, "WHATSAPP_API_URL"),
        ({"WHATSAPP_READ_TIMEOUT": "soon"}, "WHATSAPP_READ_TIMEOUT"),
        ({"WHATSAPP_CONNECT_TIMEOUT": "0"}, "WHATSAPP_CONNECT_TIMEOUT"),
        ({"WCH_STORE_CURRENCY": "dollars"}, "WCH_STORE_CURRENCY"),
    ],
)
def test_bad_whatsapp_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_read_timeout_may_have_sent_but_a_refused_connection_did_not(whatsapp, fake_graph):
    fake_graph.timeout(seconds=2)
    with pytest.raises(RetryLater) as raised:
        whatsapp.send_text("15550001111", "hi")
    assert raised.value.sent_unknown is True
    url = fake_graph.url
    fake_graph.stop()
    closed = WhatsAppClient(api_url=url, access_token=TOKEN, phone_number_id="1055", timeout=(0.5, 0.5))
    with pytest.raises(RetryLater) as raised:
        closed.send_text("15550001111", "hi")
    assert raised.value.sent_unknown is False


@pytest.mark.parametrize("lose", ["drop", "cut", "not_json", "no_id"])
def test_an_answer_lost_after_meta_acted_may_have_sent_and_the_next_call_works(whatsapp, fake_graph, lose):
    {"drop": fake_graph.drop_connection, "cut": fake_graph.cut_answer,
     "not_json": lambda: fake_graph.garble(how="not_json"), "no_id": lambda: fake_graph.garble(how="no_id")}[lose]()
    with pytest.raises(RetryLater) as raised:
        whatsapp.send_text("15550001111", "hi")
    assert raised.value.sent_unknown is True
    [request] = fake_graph.messages()
    assert request.lost == lose and request.wamid  # Meta took it and gave it an id the client never saw
    assert whatsapp.send_text("15550001111", "hi again").startswith("wamid.")
    assert len(fake_graph.messages()) == 2


def test_a_broken_answer_to_a_catalog_call_is_retried_later(whatsapp, fake_graph):
    fake_graph.cut_answer(kind="items_batch")
    with pytest.raises(RetryLater):
        whatsapp.items_batch([{"method": "DELETE", "data": {"id": "SKU-1"}}])
    assert whatsapp.items_batch([{"method": "DELETE", "data": {"id": "SKU-1"}}])["handles"]
