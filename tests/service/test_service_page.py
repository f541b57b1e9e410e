"""The web page in headless Chromium (Selenium) against a real ``lookalike serve`` on 127.0.0.1:
pick an image, see the grid and the badge, add an item with the key. Screenshots are kept as
artifacts (pytest's tmp path, and $LOOKALIKE_ARTIFACTS when set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from service_helpers import API_KEY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium not found: install Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver) to run the page test",
)


def _save(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    artifacts = os.environ.get("LOOKALIKE_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / name)
    return path


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_pick_an_image_see_matches_and_add_one_with_the_key(browser, live_server, gallery_case, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    item_id, label, known = gallery_case.gallery_images[9]
    _, unknown = gallery_case.other_images[1]
    wait = WebDriverWait(browser, 60)

    def verdict_is(text: str) -> None:
        wait.until(ec.text_to_be_present_in_element((By.ID, "verdict"), text))

    def thumbnails_loaded() -> bool:
        images = browser.find_elements(By.CSS_SELECTOR, "#results .card img")
        return bool(images) and all(
            browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
            for img in images
        )

    base, _ = live_server
    size = httpx.get(f"{base}/health", timeout=30).json()["gallery_size"]  # other tests share the server
    browser.get(base + "/")
    wait.until(ec.text_to_be_present_in_element((By.ID, "gallery-info"), f"{size} items"))

    # a photo that is in the gallery: the badge says match with its label, the grid shows the neighbours
    browser.find_element(By.ID, "file-input").send_keys(str(known))
    verdict_is(f"match: {label}")
    assert "match" in browser.find_element(By.ID, "verdict").get_attribute("class").split()
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert len(cards) == 10
    assert cards[0].get_attribute("data-id") == item_id and "best" in cards[0].get_attribute("class")
    assert cards[0].find_element(By.CLASS_NAME, "label").text == label
    assert cards[0].find_element(By.CLASS_NAME, "distance").text == "distance 0.000"
    wait.until(lambda _: thumbnails_loaded())
    assert browser.find_element(By.ID, "query-preview").is_displayed()
    _save(browser, tmp_path, "page-match.png")

    # a photo that is not: "no match"
    browser.find_element(By.ID, "file-input").send_keys(str(unknown))
    verdict_is("no match")
    assert "no-match" in browser.find_element(By.ID, "verdict").get_attribute("class").split()

    # add it with the key; searching it again now matches the new label
    browser.find_element(By.CSS_SELECTOR, "#manage summary").click()
    add = browser.find_element(By.ID, "add-button")
    assert not add.is_enabled()  # no key, no label yet
    browser.find_element(By.ID, "api-key").send_keys(API_KEY)
    browser.find_element(By.ID, "add-label").send_keys("my new character")
    wait.until(lambda _: add.is_enabled())
    add.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "toast"), "Added to the gallery"))
    verdict_is("match: my new character")
    wait.until(ec.text_to_be_present_in_element((By.ID, "gallery-info"), f"{size + 1} items"))
    assert httpx.get(f"{base}/health", timeout=30).json()["gallery_size"] == size + 1
    assert browser.find_elements(By.CSS_SELECTOR, "#results .card .remove")  # with a key: remove buttons
    wait.until(lambda _: thumbnails_loaded())
    _save(browser, tmp_path, "page-added.png")

    # a phone-sized screen: everything still on one column, the badge visible
    browser.set_window_size(390, 844)
    browser.find_element(By.ID, "file-input").send_keys(str(known))
    verdict_is(f"match: {label}")
    wait.until(lambda _: thumbnails_loaded())
    in_view = "return arguments[0].getBoundingClientRect().top < window.innerHeight * 0.6"
    wait.until(lambda _: browser.execute_script(in_view, browser.find_element(By.ID, "verdict")))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px wide)"
    _save(browser, tmp_path, "page-phone.png")
