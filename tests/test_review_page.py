"""The review page in a real browser (Debian's chromium + chromium-driver, driven by selenium), on a
development video with two people whose plan was made by the real ``face-blur run --plan``.

Checked as an editor would: two cards with thumbnails; flipping one and rendering gives a video in
which that person is clear and the other blurred (in the pixels); a box drawn on a face the plan
missed blurs it over the range given and nowhere else; the edited plan beside the original records
who changed what. Set ``FACE_BLUR_SCREENSHOT=docs/review.png`` to keep the page's screenshot.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from review_helpers import ReviewServer, card_of, make_two_people, sequence_of
from video_helpers import detail, read_frames

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def dev(tmp_path_factory, faces_dir, test_model_dir):
    return make_two_people(tmp_path_factory.mktemp("review"), faces_dir, test_model_dir)


@pytest.fixture(scope="module")
def originals(dev):
    return read_frames(dev.video)  # what the render starts from


def wait(driver, condition, timeout: float = 60, what: str = ""):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the cards are re-rendered after each edit: an element found just before that is asked again
    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(lambda d: condition(d), message=what)


def loaded(driver, img) -> bool:
    return driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)


def show_frame(driver, number: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "frameno")
    box.send_keys(Keys.CONTROL, "a", Keys.NULL, str(number), Keys.ENTER)  # select what is there, type over it
    img = driver.find_element(By.ID, "frame")
    wait(driver, lambda d: f"/frame/{number}.jpg" in img.get_attribute("src") and loaded(d, img),
         what=f"frame {number} shown")


def draw_box(driver, box: tuple[float, float, float, float], width: int) -> None:
    """Drag on the viewer from one corner of ``box`` (frame pixels) to the other, as a mouse does."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "draw")
    size = canvas.size
    k = size["width"] / width
    x1, y1, x2, y2 = box

    def at(x: float, y: float) -> tuple[int, int]:  # selenium offsets are from the element's centre
        return int(x * k - size["width"] / 2), int(y * k - size["height"] / 2)

    chain = ActionChains(driver)
    chain.move_to_element_with_offset(canvas, *at(x1, y1)).click_and_hold()
    chain.move_to_element_with_offset(canvas, *at((x1 + x2) / 2, (y1 + y2) / 2))
    chain.move_to_element_with_offset(canvas, *at(x2, y2)).release().perform()


def render_and_download(driver, server: ReviewServer, target: Path) -> Path:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "render").click()
    link = driver.find_element(By.ID, "output")
    wait(driver, lambda d: link.is_displayed() or "failed" in d.find_element(By.ID, "status").text,
         timeout=300, what="the render finished")
    assert link.is_displayed(), driver.find_element(By.ID, "status").text
    assert driver.find_element(By.ID, "progress").get_attribute("value") == \
        driver.find_element(By.ID, "progress").get_attribute("max")
    with urllib.request.urlopen(link.get_attribute("href"), timeout=60) as r:
        target.write_bytes(r.read())
    return target


def grow(box, by: float = 0.1):
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * by, (y2 - y1) * by
    return (x1 - dx, y1 - dy, x2 + dx, y2 + dy)


def test_two_cards_flip_one_render_and_the_plan_records_it(browser, dev, originals, tmp_path):
    from selenium.webdriver.common.by import By

    plan = json.loads(dev.plan.read_text())
    obama, obama_sequences = card_of(plan, sequence_of(plan, dev.truth["obama"][0], 1))
    biden, _ = card_of(plan, sequence_of(plan, dev.truth["biden"][0], 1))
    original_plan = dev.plan.read_bytes()
    with ReviewServer(str(dev.video), "--plan", str(dev.plan), "--crf", "12") as server:
        browser.get(server.url + "/")
        cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
        assert sorted(c.get_attribute("data-card") for c in cards) == sorted([obama, biden])
        for card in cards:
            thumb = card.find_element(By.CSS_SELECTOR, "img.thumb")
            wait(browser, lambda d, t=thumb: loaded(d, t), what="thumbnail loaded")
            assert card.get_attribute("data-decision") == "blur"
            assert "30 frames" in card.text and "1 shot" in card.text
        # the overlay: the original with the boxes, read from the input on demand
        browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=boxes]").click()
        img = browser.find_element(By.ID, "frame")
        wait(browser, lambda d: "mode=boxes" in img.get_attribute("src") and loaded(d, img), what="boxes shown")
        browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=rendered]").click()

        # keep obama clear
        browser.find_element(By.CSS_SELECTOR, f"article[data-card='{obama}'] button.toggle").click()
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"article[data-card='{obama}']")
             .get_attribute("data-decision") == "keep", what="the card shows keep")
        assert browser.find_element(By.CSS_SELECTOR, f"article[data-card='{biden}']").get_attribute(
            "data-decision") == "blur"
        if os.environ.get("FACE_BLUR_SCREENSHOT"):  # the README's picture
            show_frame(browser, 12)
            browser.save_screenshot(os.environ["FACE_BLUR_SCREENSHOT"])

        out = render_and_download(browser, server, tmp_path / "out.mp4")
        # the page still answers while and after the render process ran
        show_frame(browser, 20)
        state = server.get("/api/state")
    frames = read_frames(out)
    assert len(frames) == len(originals) == 30
    for i, (got, before) in enumerate(zip(frames, originals, strict=True)):
        o, b = dev.truth["obama"][i], dev.truth["biden"][i]
        assert detail(got, o) > 0.8 * detail(before, o), f"frame {i + 1}: obama should be clear"
        assert detail(got, b) < 0.5 * detail(before, b), f"frame {i + 1}: biden should be blurred"

    saved = Path(state["render"]["plan"])
    assert saved.parent == dev.plan.parent and saved != dev.plan
    assert dev.plan.read_bytes() == original_plan  # the original is never written
    edited = json.loads(saved.read_text())
    changes = [a for a in edited["audit"] if a["action"] == "decision"]
    assert changes == [{"time": changes[0]["time"], "user": getpass.getuser(), "action": "decision",
                        "card": obama, "sequences": obama_sequences, "old": "blur", "new": "keep"}]
    save = [a for a in edited["audit"] if a["action"] == "save"][-1]
    assert save["from"] == dev.plan.name and save["sha256"] == hashlib.sha256(original_plan).hexdigest()


def test_a_box_drawn_on_a_missed_face_blurs_it_over_its_range(browser, dev, originals, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    plan = json.loads(dev.plan.read_text())
    missed = sequence_of(plan, dev.truth["biden"][0], 1)["id"]
    plan["sequences"] = [s for s in plan["sequences"] if s["id"] != missed]  # the detector "missed" biden
    plan_path = dev.plan.with_name("two.missed.json")
    plan_path.write_text(json.dumps(plan))
    with ReviewServer(str(dev.video), "--plan", str(plan_path), "--crf", "12") as server:
        browser.get(server.url + "/")
        assert len(browser.find_elements(By.CSS_SELECTOR, "article.card")) == 1
        for frame in (5, 25):
            show_frame(browser, frame)
            draw_box(browser, grow(dev.truth["biden"][frame - 1]), 640)
        assert browser.find_element(By.ID, "keyframes").text == "5, 25"
        for field, value in (("first", 3), ("last", 28)):
            browser.find_element(By.ID, field).send_keys(Keys.CONTROL, "a", Keys.NULL, str(value), Keys.TAB)
        browser.find_element(By.ID, "add").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.card")) == 2, what="a new card")
        added = browser.find_elements(By.CSS_SELECTOR, "article.card .badge.added")
        assert len(added) == 1
        out = render_and_download(browser, server, tmp_path / "fixed.mp4")
        state = server.get("/api/state")
    frames = read_frames(out)
    for i, (got, before) in enumerate(zip(frames, originals, strict=True)):
        number = i + 1
        o, b = dev.truth["obama"][i], dev.truth["biden"][i]
        assert detail(got, o) < 0.5 * detail(before, o), f"frame {number}: obama stays blurred"
        if 3 <= number <= 28:
            assert detail(got, b) < 0.5 * detail(before, b), f"frame {number}: the drawn face is blurred"
        else:
            assert detail(got, b) > 0.8 * detail(before, b), f"frame {number}: outside the range it is clear"
    edited = json.loads(Path(state["render"]["plan"]).read_text())
    add = [a for a in edited["audit"] if a["action"] == "add"]
    assert len(add) == 1 and add[0]["first"] == 3 and add[0]["last"] == 28 and add[0]["keyframes"] == [5, 25]
    new = [s for s in edited["sequences"] if s.get("added")]
    assert len(new) == 1 and new[0]["decision"] == "blur" and (new[0]["first"], new[0]["last"]) == (3, 28)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\tZ" not in status.split("State:", 1)[1].split("\n", 1)[0]  # a zombie has ended


def test_the_page_answers_while_a_render_runs_and_stopping_the_server_stops_it(dev):
    """The render runs in a child process: frames are still served meanwhile, and stopping the
    server (SIGTERM to it alone) stops the render too and frees the port."""
    import signal
    import socket

    with ReviewServer(str(dev.video), "--plan", str(dev.plan), "--preset", "veryslow") as server:
        pid = server.post("/api/render")["render"]["pid"]
        assert _alive(pid)
        started = time.monotonic()
        with urllib.request.urlopen(server.url + "/frame/17.jpg?mode=rendered", timeout=30) as r:
            assert r.status == 200 and r.headers["content-type"] == "image/jpeg"
        assert time.monotonic() - started < 30
        os.kill(server.proc.pid, signal.SIGTERM)
        server.proc.wait(30)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pid), "the render process outlived the server"
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", server.port))


def test_a_person_card_flips_all_of_its_sequences(browser, dev, originals, tmp_path):
    """A plan with ``persons`` (the shape face-blur's person grouping writes): one card per person
    even when a person has several sequences, and flipping the card flips all of them."""
    from selenium.webdriver.common.by import By

    plan = json.loads(dev.plan.read_text())
    obama = sequence_of(plan, dev.truth["obama"][0], 1)
    biden = sequence_of(plan, dev.truth["biden"][0], 1)
    second = {**obama, "id": 100, "first": 16, "boxes": obama["boxes"][15:], "rows": obama["rows"][15:],
              "confidence": obama["confidence"][15:]}
    second["last"] = second["first"] + len(second["boxes"]) - 1
    first = {**obama, "boxes": obama["boxes"][:15], "rows": obama["rows"][:15],
             "confidence": obama["confidence"][:15], "last": 15}
    plan["sequences"] = [first, second, biden]
    plan["persons"] = [
        {"id": "person-1", "sequences": [first["id"], 100], "frames": 30, "shots": [0],
         "thumbnail": {"frame": 10, "box": obama["boxes"][9]}, "decision": "blur", "borderline": True,
         "score": 0.61, "person": None, "reason": "two sequences, one person"},
        {"id": "person-2", "sequences": [biden["id"]], "frames": 30, "shots": [0],
         "thumbnail": {"frame": 10, "box": biden["boxes"][9]}, "decision": "blur", "borderline": False,
         "score": None, "person": None, "reason": "mode all blurs every face"}]
    plan_path = dev.plan.with_name("two.persons.json")
    plan_path.write_text(json.dumps(plan))
    with ReviewServer(str(dev.video), "--plan", str(plan_path), "--crf", "12") as server:
        browser.get(server.url + "/")
        cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
        assert [c.get_attribute("data-card") for c in cards] == ["person-1", "person-2"]  # borderline first
        assert "borderline" in cards[0].text and "score 0.61" in cards[0].text
        assert len(cards[0].find_elements(By.CSS_SELECTOR, ".timeline .seg")) == 1  # 1-15 and 16-30 touch
        browser.find_element(By.CSS_SELECTOR, "article[data-card='person-1'] button.toggle").click()
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "article[data-card='person-1']")
             .get_attribute("data-decision") == "keep", what="the person is kept")
        out = render_and_download(browser, server, tmp_path / "persons.mp4")
    for i, (got, before) in enumerate(zip(read_frames(out), originals, strict=True)):
        o, b = dev.truth["obama"][i], dev.truth["biden"][i]
        assert detail(got, o) > 0.8 * detail(before, o), f"frame {i + 1}: both of obama's sequences are kept"
        assert detail(got, b) < 0.5 * detail(before, b), f"frame {i + 1}: biden is blurred"
