"""The lab in a real browser (Debian's Chromium driven by Playwright) on the shipped models: type a prompt, generate,
see text arrive in two panes, move the temperature slider and see the next-character chart change, and take the
screenshots the README shows (written to docs/ when SAVE_SCREENSHOTS=1).

Without Chromium this test skips, saying why; `.ci/run` installs it and sets REQUIRE_BROWSER=1, so in CI it runs."""

import os
import re
import shutil
import socket
from pathlib import Path

import pytest

from conftest import ROOT
from gpt2mini.lab.catalog import load_lab
from gpt2mini.lab.ui import build_demo, launch_options

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MODELS = Path(os.environ.get("LAB_MODELS", ROOT / "models"))


def browser_or_skip():
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -r requirements-dev.txt)"
    if reason is None and not Path(CHROMIUM).exists():
        reason = "no Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)"
    if reason:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def url():
    browser_or_skip()
    demo = build_demo(load_lab(MODELS))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, address, _ = demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(demo)
    )
    yield address
    demo.close()


def open_lab(p, url: str):
    """Chromium (headless) with the lab open at desktop size: (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--disable-gpu", "--disable-quic"])
    page = browser.new_page(viewport={"width": 1360, "height": 1100})
    page.goto(url)
    return browser, page


def test_generate_compare_and_move_the_temperature(url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = ROOT / "docs" if os.environ.get("SAVE_SCREENSHOTS") == "1" else tmp_path
    with sync_playwright() as p:
        browser, page = open_lab(p, url)
        page.get_by_role("tab", name="Side by side").click()
        prompt = "ROMEO:\nBut soft, what light"
        page.locator("#prompt textarea").fill(prompt)
        page.get_by_role("button", name="Generate side by side").click()
        # text beyond the prompt arrives in at least two panes
        for pane in ("#pane-0", "#pane-1"):
            expect(page.locator(f"{pane} .gm-diff, {pane} .gm-text")).not_to_have_count(0, timeout=30_000)
        page.wait_for_function(
            """(n) => ['#pane-0', '#pane-1'].every(id => {
                const el = document.querySelector(id + ' .gm-text');
                return el && el.innerText.length > n;
            })""",
            arg=len(prompt) + 80,
            timeout=60_000,
        )
        page.wait_for_timeout(1500)  # let the rest of the 300 characters stream in for the picture
        page.screenshot(path=str(shots / "lab_side_by_side.png"), full_page=True)
        assert page.locator("#pane-0 .gm-head").inner_text().startswith("baseline")

        page.get_by_role("tab", name="Next character").click()
        read = """() => Array.from(document.querySelectorAll("#next-bars .gm-card:first-child .gm-bar-row"))
            .map(e => parseFloat(e.dataset.p))"""
        # the chart for the typed prompt at temperature 0.8: several candidates
        page.wait_for_function(f"() => ({read})().length >= 5", timeout=45_000)
        before = max(page.evaluate(read))
        slider = page.locator("#temperature input[type=number]")
        slider.fill("1.9")
        slider.press("Enter")
        # a hotter temperature flattens the distribution: the top bar must drop
        page.wait_for_function(f"(old) => Math.max(...({read})()) < old - 0.01", arg=before, timeout=45_000)
        after = max(page.evaluate(read))
        assert after < before
        page.screenshot(path=str(shots / "lab_next_character.png"), full_page=True)
        browser.close()
    assert (shots / "lab_side_by_side.png").stat().st_size > 20_000


def test_html_in_the_prompt_is_shown_as_text_and_never_runs(url):
    from playwright.sync_api import expect, sync_playwright

    prompt = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold?</b>'
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--disable-gpu", "--disable-quic"])
        page = browser.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Side by side").click()
        page.locator("#prompt textarea").fill(prompt)
        page.get_by_role("button", name="Generate side by side").click()
        shown = page.locator("#pane-0 .gm-prompt")
        expect(shown).to_have_text(prompt, timeout=30_000)  # the tags, as characters
        page.wait_for_timeout(500)
        assert page.locator("#pane-0 img, #pane-0 script, #pane-0 b:text('bold?')").count() == 0
        assert page.evaluate("() => window.pwned") is None  # neither the onerror handler nor the script ran
        browser.close()


def test_the_training_tab_shows_the_sweep_and_each_variant_at_its_best(url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = ROOT / "docs" if os.environ.get("SAVE_SCREENSHOTS") == "1" else tmp_path
    with sync_playwright() as p:
        browser, page = open_lab(p, url)
        page.get_by_role("tab", name="Training").click()
        expect(page.get_by_text("Each variant at its best learning rate", exact=True)).to_be_visible(timeout=15_000)
        expect(page.locator(":text('character frequencies only (unigram)'):visible").first).to_be_visible()
        expect(page.locator("#sweep-plot img")).to_be_visible()
        expect(page.locator("#training-plot img")).to_be_visible()
        page.screenshot(path=str(shots / "lab_training.png"), full_page=True)
        browser.close()


def test_the_scaling_tab_shows_the_laws_and_a_size_from_the_grid_writes(url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = ROOT / "docs" if os.environ.get("SAVE_SCREENSHOTS") == "1" else tmp_path
    with sync_playwright() as p:
        browser, page = open_lab(p, url)
        page.get_by_role("tab", name="Scaling").click()
        expect(page.get_by_text("The compute-optimal frontier: where the best size changes")).to_be_visible(
            timeout=15_000
        )
        expect(page.locator("#scaling-compute img")).to_be_visible()
        sizes = page.locator("#scaling-size label")
        assert sizes.count() >= 2
        sizes.nth(1).click()
        page.get_by_role("button", name="Write with this size").click()
        out = page.locator("#scaling-out textarea")
        expect(out).to_have_value(re.compile(r"^ROMEO:.{40,}", re.S), timeout=30_000)
        page.screenshot(path=str(shots / "lab_scaling.png"), full_page=True)
        browser.close()


def test_an_example_runs_side_by_side_and_stop_says_so(url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_lab(p, url)
        page.get_by_role("tab", name="Training").click()
        page.get_by_role("button", name="wagahai: 吾輩は猫である。").click()
        # the example switches to Side by side and runs there, on the corpus it names
        expect(page.locator("#pane-0 .gm-prompt")).to_have_text("吾輩は猫である。", timeout=30_000)
        expect(page.locator("#compare-status")).to_contain_text("departs from", timeout=60_000)
        assert "never saw" not in page.locator("#compare-status").inner_text()  # wagahai's models, not Shakespeare's
        expect(page.locator("#compare-status")).to_contain_text("First character after", timeout=120_000)  # it ended
        page.get_by_text("Length, repetition, seed").click()
        longest = page.locator("#max-new input[type=number]")
        longest.fill("2000")  # long enough to stop by hand
        longest.press("Enter")
        page.get_by_role("button", name="Generate side by side").click()
        page.wait_for_timeout(300)
        page.locator("#compare-stop").click()  # a quick Stop: the run may not even have started
        expect(page.locator("#compare-stopped")).to_contain_text("Stopped", timeout=15_000)
        page.wait_for_timeout(1000)
        written = page.locator("#pane-0 .gm-text").inner_text()
        assert len(written) < 1000  # it did stop, well before 2000 characters
        page.wait_for_timeout(1000)
        assert page.locator("#pane-0 .gm-text").inner_text() == written  # and nothing more arrives
        page.get_by_role("button", name="Generate side by side").click()
        expect(page.locator("#compare-stopped")).not_to_contain_text("Stopped", timeout=15_000)  # a new run clears it
        browser.close()


def test_on_a_phone_the_tabs_are_in_the_first_screen_and_panes_stack(url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = ROOT / "docs" if os.environ.get("SAVE_SCREENSHOTS") == "1" else tmp_path
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--disable-gpu", "--disable-quic"])
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page.goto(url)
        tab = page.get_by_role("tab", name="Side by side")
        expect(page.locator("#settings.open")).to_have_count(0, timeout=15_000)  # the sidebar starts closed
        assert tab.bounding_box()["y"] < 844  # no scrolling to find the tabs
        page.get_by_role("button", name="Generate side by side").click()
        expect(page.locator("#pane-1 .gm-text")).to_be_visible(timeout=30_000)
        first, second = (page.locator(f"#pane-{i}").bounding_box() for i in (0, 1))
        assert second["y"] > first["y"] + first["height"] - 1 and first["width"] > 300  # one column, full width
        page.screenshot(path=str(shots / "lab_phone.png"), full_page=False)
        browser.close()


def test_step_through_a_generation_and_take_a_character_back(url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_lab(p, url)
        page.locator("#prompt textarea").fill("ROMEO:")
        page.get_by_role("tab", name="Next character").click()
        bars = "#next-bars .gm-card:first-child .gm-bar-row"
        expect(page.locator(bars).first).to_be_visible(timeout=30_000)
        page.locator("#step").click()
        expect(page.locator("#step-note")).to_contain_text("baseline drew", timeout=30_000)
        grown = page.locator("#prompt textarea").input_value()
        assert grown.startswith("ROMEO:") and len(grown) == len("ROMEO:") + 1
        page.get_by_role("button", name="◀ Take back a character").click()
        expect(page.locator("#prompt textarea")).to_have_value("ROMEO:", timeout=15_000)
        browser.close()


def test_a_japanese_browser_gets_the_lab_in_japanese_and_the_switch_rewords_it(url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = ROOT / "docs" if os.environ.get("SAVE_SCREENSHOTS") == "1" else tmp_path
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--disable-gpu", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1360, "height": 1100}, locale="ja-JP")
        page.goto(url)
        expect(page.get_by_role("tab", name="次の文字")).to_be_visible(timeout=15_000)  # Gradio's i18n, first paint
        expect(page.get_by_text("GPT-2 mini ラボ")).to_be_visible(timeout=15_000)  # the server's words, at load
        expect(page.get_by_label("日本語")).to_be_checked()
        expect(page.locator(".gm-tip").first).to_contain_text("試してみよう")
        expect(page.locator("#settings")).to_contain_text("残差接続なし")
        page.get_by_role("button", name="並べて生成").click()
        expect(page.locator("#compare-status")).to_contain_text("最初の文字まで", timeout=120_000)
        assert "強調" in page.locator("#compare-status").inner_text()
        assert "ベースライン" in page.locator("#pane-0 .gm-head").inner_text()
        page.screenshot(path=str(shots / "lab_japanese.png"), full_page=False)
        page.get_by_label("English").check()  # the switch re-words the page and what the server wrote
        expect(page.get_by_role("tab", name="Next character")).to_be_visible(timeout=15_000)
        expect(page.get_by_text("GPT-2 mini lab")).to_be_visible(timeout=15_000)
        expect(page.locator(".gm-tip").first).to_contain_text("Try:")
        expect(page.locator("#settings")).to_contain_text("residual off")
        page.get_by_role("tab", name="Next character").click()
        expect(page.locator("#next-bars .gm-head").first).to_contain_text("baseline", timeout=30_000)
        browser.close()
