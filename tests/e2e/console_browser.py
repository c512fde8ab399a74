#!/usr/bin/env python3
"""The console and one-click unsubscribe in headless Chromium (scripts/browser-test.sh runs it).

As an operator: the console refuses without a session, the login works, the dashboard, the
archive, a report (framed, inert) and its delivery log show, the language switches, pages fit
a phone. As a recipient: the unsubscribe link of a delivered message (its footer link, the
same as its List-Unsubscribe header) shows a confirmation, the button unsubscribes, a forged
token is refused. Prints one JSON line: the address that unsubscribed. Screenshots go to
--artifacts.
"""
import argparse
import email
import html as htmllib
import email.policy
import json
import pathlib
import re
import sys
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait


def click_to(d, element, url_part):
    """Clicks and waits for the page the click leads to."""
    old = d.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(d, 10).until(EC.staleness_of(old))
    WebDriverWait(d, 10).until(EC.url_contains(url_part))


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--lang=zh-CN"]:
        opts.add_argument(arg)
    # A browser set to Chinese (headless Chromium otherwise asks for en-US).
    opts.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


class Check:
    def __init__(self, driver, artifacts, axe=None):
        self.d = driver
        self.artifacts = artifacts
        self.shots = 0
        # axe-core's source (from the npm registry), run in each page through WebDriver.
        self.axe = axe
        self.scanned = 0
        self.d.set_script_timeout(60)

    def accessible(self, where):
        """axe-core finds no serious or critical violation on the page."""
        if not self.axe:
            return
        self.d.execute_script(self.axe)
        result = self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document).then(r => done({rules: r.passes.length + r.violations.length,"
            " serious: r.violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3)"
            ".map(n => n.target.join(' ')).join(', '))}))"
            ".catch(e => done({rules: 0, serious: ['axe did not run: ' + e]}));")
        assert result["rules"] > 0, f"{where}: axe checked nothing"
        assert not result["serious"], f"{where}: {result['serious']}"
        self.scanned += 1

    def shot(self, name):
        self.shots += 1
        self.d.save_screenshot(str(self.artifacts / f"{self.shots:02d}-{name}.png"))

    def inert(self, where):
        """Nothing a feed wrote ran: no dialog, no rewritten title, no script element."""
        try:
            alert = self.d.switch_to.alert
            raise AssertionError(f"{where}: a dialog opened: {alert.text}")
        except NoAlertPresentException:
            pass
        assert "pwned" not in self.d.title, f"{where}: script ran (title {self.d.title!r})"
        scripts = self.d.execute_script("return document.querySelectorAll('script').length")
        assert scripts == 0, f"{where}: {scripts} script elements"


def delivered_link(maildir):
    """A delivered message's unsubscribe link: the footer's, checked against its header."""
    for path in sorted(pathlib.Path(maildir).glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        header = str(msg.get("List-Unsubscribe", ""))
        from_header = re.search(r"<(https?://[^>]+)>", header)
        html = msg.get_body(preferencelist=("html",))
        if not from_header or html is None:
            continue
        hrefs = [htmllib.unescape(h) for h in re.findall(r'href="([^"]+)"', html.get_content())]
        footer = [h for h in hrefs if "/unsubscribe?token=" in h]
        assert footer, f"{path.name}: no unsubscribe link in the footer"
        link = footer[-1]
        assert link == from_header.group(1), f"{path.name}: footer {link} != header {from_header.group(1)}"
        assert msg.get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
        return link, str(msg["To"].addresses[0].addr_spec)
    raise AssertionError(f"no delivered message with an unsubscribe link in {maildir}")


def operator(c, base, user, password):
    d = c.d
    d.get(base + "/console")
    assert d.current_url.endswith("/login"), f"no session, yet {d.current_url}"
    c.accessible("login")
    c.shot("login")
    d.find_element(By.ID, "user").send_keys(user)
    d.find_element(By.ID, "password").send_keys("not the password")
    click_to(d, d.find_element(By.ID, "login"), "/login")
    assert d.find_element(By.CSS_SELECTOR, "p.error"), "a wrong password says so"
    d.find_element(By.ID, "user").clear()
    d.find_element(By.ID, "user").send_keys(user)
    d.find_element(By.ID, "password").send_keys(password)
    click_to(d, d.find_element(By.ID, "login"), "/console")
    assert d.find_element(By.TAG_NAME, "h1").text == "概览", "Chinese by default"
    assert "morning-brief" in d.find_element(By.ID, "period-last_24h").text
    c.inert("dashboard")
    c.shot("dashboard")

    click_to(d, d.find_element(By.LINK_TEXT, "报告归档"), "/console/reports")
    rows = d.find_elements(By.CSS_SELECTOR, "#archive tbody tr")
    assert rows and "morning-brief" in rows[0].text, "the archive lists the run"
    click_to(d, rows[0].find_element(By.TAG_NAME, "a"), "/console/reports/")
    c.inert("report page")
    steps = d.find_element(By.ID, "steps").text
    for step in ["采集", "编排", "发送"]:
        assert step in steps, f"step {step} in {steps}"
    text = d.find_element(By.ID, "report-text").text
    assert "央行宣布降准" in text and "<script" not in text
    c.shot("report")
    frame = d.find_element(By.ID, "report-frame")
    d.switch_to.frame(frame)
    body = d.find_element(By.TAG_NAME, "body").text
    assert "央行宣布降准" in body, "the report as sent shows in its frame"
    for a in d.find_elements(By.TAG_NAME, "a"):
        href = a.get_attribute("href") or ""
        assert not href.lower().startswith("javascript:"), href
    d.switch_to.default_content()
    c.inert("report frame")

    click_to(d, d.find_element(By.ID, "delivery-log"), "/deliveries")
    log = d.find_element(By.ID, "deliveries").text
    assert "@" in log and ("已发送" in log), log
    c.shot("delivery-log")
    Select(d.find_element(By.NAME, "status")).select_by_value("failed")
    click_to(d, d.find_element(By.CSS_SELECTOR, "form.filter button"), "status=failed")

    click_to(d, d.find_element(By.ID, "lang-switch"), "lang=en")
    assert d.find_element(By.TAG_NAME, "h1").text.startswith("Delivery log"), "English by the switch"
    d.get(base + "/console/sources")
    assert d.find_element(By.TAG_NAME, "h1").text == "Sources", "the choice is remembered"
    assert "hostile-wire" in d.find_element(By.ID, "sources").text
    c.inert("sources")
    c.shot("sources-en")

    # Readable on a phone, in both languages: no page wider than the screen, no table cell
    # narrower than 48 px (a column one character wide), nothing sticking out of its card.
    d.set_window_size(390, 844)
    phone_pages = ["/console/reports", "/console/recipients", "/console/sources",
                   "/console/reports/1/deliveries", "/console/deliveries", "/console/reports/1",
                   "/console/previews/1", "/console"]
    for lang in ["en", "zh"]:
        for page in phone_pages:
            d.get(f"{base}{page}?lang={lang}")
            over = d.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert over <= 1, f"{page} ({lang}) is {over}px wider than a phone"
            narrow = d.execute_script(
                "return [...document.querySelectorAll('td, th')]"
                ".filter(c => !c.closest('table.stack thead'))"
                ".filter(c => c.offsetParent !== null && c.getBoundingClientRect().width > 0"
                " && c.getBoundingClientRect().width < 48 && c.textContent.trim().length > 0)"
                ".map(c => c.textContent.trim().slice(0, 20))")
            assert not narrow, f"{page} ({lang}): cells narrower than 48 px: {narrow}"
            sticking_out = d.execute_script(
                "return [...document.querySelectorAll('.card, .scroll')].flatMap(box => {"
                " const b = box.getBoundingClientRect();"
                " return [...box.querySelectorAll('*')].filter(e => !e.closest('table.stack thead')).filter(e => {"
                "  const r = e.getBoundingClientRect();"
                "  return r.width > 0 && (r.right > b.right + 1 || r.left < b.left - 1); })"
                " .map(e => e.tagName + ':' + e.textContent.trim().slice(0, 20)); })")
            assert not sticking_out, f"{page} ({lang}): out of its card: {sticking_out[:5]}"
            c.shot(f"phone-{lang}-{page.strip('/').replace('/', '-') or 'console'}")
    d.get(base + "/console?lang=en")
    c.shot("dashboard-phone")

    # At a desktop's size too, in both languages: nothing sticks out of its card (a table
    # clipped at its card's edge), no sideways scroll, and axe-core finds nothing serious.
    d.set_window_size(1280, 900)
    for lang in ["zh", "en"]:
        for page in phone_pages:
            d.get(f"{base}{page}?lang={lang}")
            over = d.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert over <= 1, f"{page} ({lang}) is {over}px wider than the window"
            sticking_out = d.execute_script(
                "return [...document.querySelectorAll('.card, .scroll')].flatMap(box => {"
                " const b = box.getBoundingClientRect();"
                " return [...box.querySelectorAll('*')].filter(e => {"
                "  const r = e.getBoundingClientRect();"
                "  return r.width > 0 && (r.right > b.right + 1 || r.left < b.left - 1); })"
                " .map(e => e.tagName + ':' + e.textContent.trim().slice(0, 20)); })")
            assert not sticking_out, f"{page} ({lang}): out of its card: {sticking_out[:5]}"
            c.accessible(f"{page} ({lang})")
            c.shot(f"desktop-{lang}-{page.strip('/').replace('/', '-') or 'console'}")
    d.set_window_size(1280, 900)
    d.get(base + "/console")
    click_to(d, d.find_element(By.ID, "logout"), "/login")
    d.get(base + "/console")
    assert d.current_url.endswith("/login"), "logged out"


def recipient(c, base, link, address):
    d = c.d
    d.delete_all_cookies()
    parsed = urllib.parse.urlsplit(link)
    token = urllib.parse.parse_qs(parsed.query)["token"][0]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    d.get(f"{base}/unsubscribe?token={forged}")
    page = d.find_element(By.ID, "unsubscribe")
    assert page.get_attribute("data-outcome") == "invalid", "a forged token is refused"
    assert "@" not in page.text
    c.shot("unsubscribe-forged")

    d.get(link)
    page = d.find_element(By.ID, "unsubscribe")
    assert page.get_attribute("data-outcome") == "confirm", page.text
    local, domain = address.split("@")
    assert f"{local[0]}***@{domain}" in page.text, page.text
    c.accessible("unsubscribe confirm")
    c.shot("unsubscribe-confirm")
    # The language switch keeps the token.
    click_to(d, d.find_element(By.ID, "lang-switch"), "lang=en")
    page = d.find_element(By.ID, "unsubscribe")
    assert page.get_attribute("data-outcome") == "confirm", page.text
    assert "Once you confirm" in page.text, page.text
    click_to(d, d.find_element(By.ID, "confirm-unsubscribe"), "/unsubscribe")
    page = d.find_element(By.ID, "unsubscribe")
    assert page.get_attribute("data-outcome") == "done", page.text
    c.inert("unsubscribe")
    c.accessible("unsubscribe done")
    c.shot("unsubscribe-done")
    # Clicked by mistake: the same page offers the way back, with the same signed link.
    click_to(d, d.find_element(By.ID, "resubscribe"), "/unsubscribe")
    page = d.find_element(By.ID, "unsubscribe")
    assert page.get_attribute("data-outcome") == "resubscribed", page.text
    c.shot("unsubscribe-resubscribed")
    d.get(link)
    page = d.find_element(By.ID, "unsubscribe")
    assert page.get_attribute("data-outcome") == "confirm", page.text
    click_to(d, d.find_element(By.ID, "confirm-unsubscribe"), "/unsubscribe")
    assert d.find_element(By.ID, "unsubscribe").get_attribute("data-outcome") == "done"
    d.get(link)
    assert d.find_element(By.ID, "unsubscribe").get_attribute("data-outcome") == "already"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--axe", help="axe-core's axe.min.js")
    args = ap.parse_args()
    artifacts = pathlib.Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    link, address = delivered_link(args.maildir)
    assert link.startswith(args.base), f"{link} is not on {args.base}"
    d = browser()
    axe = pathlib.Path(args.axe).read_text(encoding="utf-8") if args.axe else None
    c = Check(d, artifacts, axe)
    try:
        operator(c, args.base, args.user, args.password)
        recipient(c, args.base, link, address)
    except Exception:
        c.shot("failure")
        (artifacts / "failure.html").write_text(d.page_source, encoding="utf-8")
        raise
    finally:
        d.quit()
    print(json.dumps({"unsubscribed": address, "screenshots": c.shots, "pages_scanned_by_axe": c.scanned}))


if __name__ == "__main__":
    sys.exit(main())
