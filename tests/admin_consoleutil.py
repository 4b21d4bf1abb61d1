"""The web console from a test (docs/console.md): a broker whose admin listener
serves this checkout's console/, a headless browser (tests/cdp.py) and the
steps every console test takes: log in, open a page, check the layout, keep a
screenshot.

    def test_x(broker_factory, tmp_path, browser):
        b = console_broker(broker_factory, tmp_path)
        console_login(browser, b)
        goto(browser, b, "clients")
        browser.wait_for("#clients-table")
        no_overflow(browser)
        shot(browser, tmp_path, "clients")
"""

import os
import shutil

import pytest

from adminutil import ADMIN_PASS, ADMIN_USER, admin_broker
from cdp import Browser, chromium_or_skip
from conftest import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSOLE = os.path.join(ROOT, "console")
PAGES = ["overview", "clients", "sessions", "retained", "topics", "users", "limits", "config"]
VIEWPORTS = {"desktop": (1366, 768), "phone": (375, 812)}


def console_broker(broker_factory, tmp_path, extra="", console_dir=CONSOLE, websockets=False,
                   **kw):
    """A broker (admin_broker: .port MQTT, .aport admin) with admin_console_dir set;
    websockets=True adds a `protocol websockets` listener (.wsport)."""
    ws = ""
    wsport = None
    if websockets:
        wsport = free_port()
        ws = f"listener {wsport} 127.0.0.1\nprotocol websockets\n"
    b = admin_broker(broker_factory, tmp_path,
                     extra=f"admin_console_dir {console_dir}\n{ws}{extra}", **kw)
    b.wsport = wsport
    b.url = f"http://127.0.0.1:{b.aport}"
    return b


def console_copy(tmp_path):
    """A copy of console/ the test may change (add files, symlinks)."""
    d = os.path.join(str(tmp_path), "console-copy")
    if not os.path.exists(d):
        shutil.copytree(CONSOLE, d)
    return d


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium at 1366x768, stopped at the end; skips without chromium."""
    chromium_or_skip()
    with Browser(tmp_path) as b:
        yield b


def page_of(browser):
    return browser.evaluate("document.body.dataset.page || ''")


def console_login(browser, b, user=ADMIN_USER, password=ADMIN_PASS, expect_ok=True):
    """Open the console (at / : the redirect too) and log in through the form."""
    browser.navigate(b.url + "/")
    browser.wait_for("#login-user")
    browser.type("#login-user", user)
    browser.type("#login-pass", password)
    browser.click("#login-submit")
    if expect_ok:
        browser.wait_until("document.body.dataset.page === 'overview'", what="the overview page")
    else:
        browser.wait_until("document.querySelector('#login-error').textContent !== ''",
                           what="a login error")


def goto(browser, b, page, timeout=10.0):
    """Open a page by its hash route and wait until it has rendered something."""
    browser.evaluate(f"location.hash = '#/{page}'")
    browser.wait_until(f"document.body.dataset.page === '{page}' && "
                       "document.querySelector('main').children.length > 1",
                       timeout, what=f"page {page}")


def no_overflow(browser, what=""):
    """Nothing wider than the viewport (document.scrollWidth <= innerWidth)."""
    over = browser.overflow()
    assert over <= 0, f"{what}: the page is {over} px wider than the viewport"


def shot(browser, tmp_path, name):
    """A screenshot into $HATO_SCREENSHOTS (default tmp_path) as console-NAME.png."""
    d = os.environ.get("HATO_SCREENSHOTS") or str(tmp_path)
    os.makedirs(d, exist_ok=True)
    return browser.screenshot(os.path.join(d, f"console-{name}.png"))


def page_errors(browser):
    """Script exceptions and CSP refusals seen so far (network 404s of endpoints
    not there are expected and left out)."""
    return [e for e in browser.errors if not e.startswith("log network:")]
