"""A person in a real browser: Debian's headless Chromium driven by Selenium.

Log in to the browsable API through Apache (session, CSRF over HTTPS), browse the
upstreams, filter the audit events with the filter form, open the audit dashboard and
the API docs; screenshots go to ``test-artifacts/browser/``.  Chromium runs with an
empty profile and without any network of its own (the host may have none).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.deployed.conftest import ARTIFACTS, BASE_URL, manage_ok

pytestmark = pytest.mark.deployed

SHOTS = ARTIFACTS / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing: `make test` installs the chromium and chromium-driver packages.")
    profile = tempfile.mkdtemp(prefix="auditgate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--ignore-certificate-errors",
    ):
        options.add_argument(flag)  # fmt: skip
    # The driver named explicitly: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def auditor_login() -> tuple[str, str]:
    """An auditor (not an administrator) with a known password, made on the host."""
    username, password = "browser-auditor", secrets.token_urlsafe(16)
    manage_ok("shell", "-c", (
        "from django.contrib.auth.models import Group, User\n"
        f"user, _ = User.objects.get_or_create(username={username!r})\n"
        f"user.set_password({password!r}); user.is_active = True; user.save()\n"
        "user.groups.add(Group.objects.get_or_create(name='auditor')[0])\n"
    ))  # fmt: skip
    return username, password


def wait(driver: webdriver.Chrome, condition, seconds: int = 15):
    try:
        return WebDriverWait(driver, seconds).until(condition)
    except TimeoutException:
        driver.save_screenshot(str(SHOTS / "timeout.png"))
        page = driver.find_element(By.TAG_NAME, "body").text[:500]
        raise AssertionError(f"timed out on {driver.current_url}: {page}") from None


def log_in(driver: webdriver.Chrome, username: str, password: str, next_path: str) -> None:
    driver.get(f"{BASE_URL}/api/auth/login/?next={next_path}")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form [type=submit]").click()  # a POST with the CSRF token
    wait(driver, lambda d: urlsplit(d.current_url).path == next_path)


def test_an_auditor_logs_in_and_filters_the_audit_events(browser, auditor_login):
    log_in(browser, *auditor_login, "/api/audit/events/")
    assert "csrftoken" in {cookie["name"] for cookie in browser.get_cookies()}
    assert auditor_login[0] in browser.find_element(By.CSS_SELECTOR, ".navbar").text  # logged in
    browser.find_element(By.CSS_SELECTOR, "button[data-target='#filtersModal']").click()
    field = wait(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, "#filtersModal input[name=actor]")))
    field.send_keys(auditor_login[0])
    browser.find_element(By.CSS_SELECTOR, "#filtersModal form [type=submit]").click()
    wait(browser, EC.url_contains(f"actor={auditor_login[0]}"))
    body = browser.find_element(By.CSS_SELECTOR, ".response-info").text
    assert '"results"' in body and '"actor_username": "' + auditor_login[0] + '"' in body
    browser.save_screenshot(str(SHOTS / "audit-events-filtered.png"))


def legend(driver: webdriver.Chrome, chart: str) -> dict[str, str]:
    """The series names in a uPlot chart's legend and the values it shows for them ("--": none)."""
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{chart} .u-legend .u-series")
    return {
        row.find_element(By.CSS_SELECTOR, ".u-label").text: row.find_element(By.CSS_SELECTOR, ".u-value").text
        for row in rows
    }


def denial_listed(driver: webdriver.Chrome, request_id: str) -> bool:
    """Whether the recent denials list ``request_id``; if not, asks the dashboard to load again (its
    figures may come from a replica a moment behind)."""
    if driver.find_elements(By.XPATH, f"//button[contains(@class,'chain-open')][text()='{request_id}']"):
        return True
    if driver.find_element(By.ID, "status").text.startswith("Updated"):
        driver.execute_script("document.forms.controls.elements.window.dispatchEvent(new Event('change'))")
    return False


def check_the_dashboard(driver: webdriver.Chrome, request_id: str) -> None:
    """The charts drawn by uPlot, their cursor values, a drag zoom and its reset, the chain of a denial."""
    for chart in ("chart-time", "chart-upstreams"):
        assert driver.find_elements(By.CSS_SELECTOR, f"#{chart} .uplot canvas"), chart
    values = legend(driver, "chart-time")
    assert {"requests", "denials", "errors"} <= set(values), values
    assert all(values[name] == "--" for name in ("requests", "denials", "errors")), values  # no cursor yet
    assert len(legend(driver, "chart-upstreams")) >= 2  # the time and at least one upstream

    over = driver.find_element(By.CSS_SELECTOR, "#chart-time .u-over")  # uPlot's mouse layer, over the canvas
    ActionChains(driver).move_to_element(over).pause(0.2).perform()
    wait(driver, lambda d: legend(d, "chart-time")["requests"].isdigit())
    values = legend(driver, "chart-time")
    assert all(values[name].isdigit() for name in ("requests", "denials", "errors")), values
    driver.save_screenshot(str(SHOTS / "audit-dashboard.png"))

    chart = driver.find_element(By.ID, "chart-time")
    assert chart.get_attribute("data-zoomed") == "false"
    width = over.size["width"]
    drag = ActionChains(driver).move_to_element_with_offset(over, -width // 5, 0).click_and_hold()
    drag.move_by_offset(width // 10, 0).move_by_offset(width // 10, 0).move_by_offset(width // 10, 0)
    drag.release().perform()
    wait(driver, lambda d: chart.get_attribute("data-zoomed") == "true")
    driver.save_screenshot(str(SHOTS / "audit-dashboard-zoomed.png"))
    driver.find_element(By.CSS_SELECTOR, "button.reset-zoom[data-chart='chart-time']").click()
    wait(driver, lambda d: chart.get_attribute("data-zoomed") == "false")

    button = driver.find_element(By.XPATH, f"//button[contains(@class,'chain-open')][text()='{request_id}']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait(driver, lambda d: d.find_element(By.ID, "chain").get_attribute("data-loaded") == "true")
    requested = driver.find_element(By.CSS_SELECTOR, "#chain-tree .chain-node.requested")
    assert request_id in requested.text and "deny" in requested.text, requested.text
    assert "Could not load" not in driver.find_element(By.ID, "chain-status").text
    driver.execute_script("document.getElementById('chain').scrollIntoView()")
    driver.save_screenshot(str(SHOTS / "audit-dashboard-chain.png"))


def test_the_audit_dashboard_draws_its_charts_from_the_stats_api(browser, auditor_login, admin, registered_upstream):
    # A denial of its own, so that the recent denials list one whose chain can be opened.
    response = admin.get(f"{BASE_URL}/gw/{registered_upstream}/secret", timeout=10)
    assert response.status_code == 403, response.text
    request_id = response.json()["request_id"]
    log_in(browser, *auditor_login, "/audit/dashboard/")
    wait(browser, lambda d: d.find_element(By.ID, "dashboard").get_attribute("data-loaded") == "true")
    assert "Could not load" not in browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "latency").text.endswith("ms")
    wait(browser, lambda d: denial_listed(d, request_id), 60)
    check_the_dashboard(browser, request_id)


def test_the_dashboard_lists_a_real_alert(browser, auditor_login, admin, register_upstream):
    # A use of an upstream marked sensitive fires the default rule "sensitive upstream used".
    upstream = register_upstream(sensitive=True)
    assert admin.get(f"{BASE_URL}/gw/{upstream}/allowed", timeout=10).status_code == 200
    manage_ok("audit_alerts", "--once")
    log_in(browser, *auditor_login, "/audit/dashboard/")
    wait(browser, lambda d: d.find_element(By.ID, "alerts").get_attribute("data-loaded") == "true")
    row = browser.find_element(By.XPATH, f"//table[@id='alerts-table']//td[text()='admin on {upstream}']/..")
    assert "sensitive_upstream" in row.text and "sensitive upstream used" in row.text, row.text
    assert "Could not load" not in browser.find_element(By.ID, "alerts-status").text
    browser.execute_script("document.getElementById('alerts').scrollIntoView()")
    browser.save_screenshot(str(SHOTS / "audit-dashboard-alerts.png"))


def test_an_administrator_browses_the_upstreams_and_logs_out(browser, admin, registered_upstream):
    username, password = "browser-admin", secrets.token_urlsafe(16)
    manage_ok("shell", "-c", (
        "from django.contrib.auth.models import User\n"
        f"user, _ = User.objects.get_or_create(username={username!r})\n"
        f"user.set_password({password!r}); user.is_staff = True; user.is_active = True; user.save()\n"
    ))  # fmt: skip
    log_in(browser, username, password, "/api/upstreams/")
    assert registered_upstream in browser.find_element(By.CSS_SELECTOR, ".response-info").text
    # The create form names related objects in text inputs; no dropdown of every user.
    browser.get(f"{BASE_URL}/api/rules/")
    form = browser.find_element(By.CSS_SELECTOR, "#post-object-form")
    assert form.find_elements(By.CSS_SELECTOR, "input[name=user]")
    assert not form.find_elements(By.CSS_SELECTOR, "select[name=user]")
    browser.save_screenshot(str(SHOTS / "rules-form.png"))
    browser.get(f"{BASE_URL}/api/upstreams/")
    browser.save_screenshot(str(SHOTS / "upstreams.png"))
    browser.find_element(By.CSS_SELECTOR, ".dropdown-toggle").click()
    wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "a[onclick*='logoutForm']"))).click()
    browser.get(f"{BASE_URL}/api/upstreams/")
    assert "Log in" in browser.find_element(By.CSS_SELECTOR, ".navbar").text


def test_the_api_docs_render_from_the_sites_own_static_files(browser):
    browser.get(f"{BASE_URL}/api/schema/swagger-ui/")
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, ".opblock-tag")), 30)
    scripts = [s.get_attribute("src") for s in browser.find_elements(By.CSS_SELECTOR, "script[src]")]
    assert scripts and all(src.startswith(BASE_URL + "/static/") for src in scripts)
    browser.save_screenshot(str(SHOTS / "swagger-ui.png"))
    browser.get(f"{BASE_URL}/api/schema/redoc/")
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "[role=menuitem], .menu-content")), 30)
    browser.save_screenshot(str(SHOTS / "redoc.png"))
