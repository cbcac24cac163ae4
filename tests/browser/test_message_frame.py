"""The message frame on its own, in Chromium: whatever HTML reaches it (the server sanitises first;
this is the second wall), its sandbox runs no script and its CSP lets nothing load from a remote
host until "Load images" asks for the frame with remote loads allowed."""

import json
import re

import pytest

from mailroom_shared.devproxy import serve_in_thread
from mailroom_testing.stack import free_port

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path("/usr/bin/chromium").exists(),
                                reason="Debian's chromium is not installed (apt-get install chromium; "
                                       ".ci/run installs it)")


@pytest.fixture
def app_page(browser, web_dist):
    server = serve_in_thread("127.0.0.1", free_port(), {}, web_dir=web_dist)
    context = browser.new_context()
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
    frame_module = json.loads((web_dist / "build.json").read_text())["files"]["frame.js"]
    page.show = lambda html, load_images: page.evaluate("""async ([module, html, loadImages]) => {
        const { FRAME_SANDBOX, frameDocument } = await import(module);
        const frame = document.createElement("iframe");
        frame.setAttribute("sandbox", FRAME_SANDBOX);
        frame.srcdoc = frameDocument(html, loadImages, location.origin);
        frame.title = "test frame";
        const loaded = new Promise((resolve) => frame.addEventListener("load", resolve));
        document.body.append(frame);
        await loaded;
        return FRAME_SANDBOX;
    }""", [f"/{frame_module}", html, load_images])
    yield page
    context.close()
    server.shutdown()
    server.server_close()


def unsanitised(evil):
    """What a sanitiser bug would let through: every way HTML fetches or runs something."""
    return (f'<img src="{evil}/img.png"><link rel="stylesheet" href="{evil}/link.css">'
            f'<style>@import url({evil}/import.css); p {{ background: url({evil}/bg.png) }}'
            f' @font-face {{ font-family: f; src: url({evil}/font.woff) }} p {{ font-family: f }}</style>'
            f'<p style="background-image: url({evil}/inline.png)">text</p>'
            f'<video src="{evil}/video.mp4" autoplay muted></video><iframe src="{evil}/frame"></iframe>'
            f'<object data="{evil}/object"></object><script src="{evil}/script.js"></script>'
            f'<script>fetch("{evil}/fetch"); alert(1); parent.document.title = "pwned"</script>'
            f'<img src="x" onerror="alert(2)"><svg onload="alert(3)"></svg>')


def test_the_frame_runs_nothing_and_loads_nothing_remote_until_load_images(app_page, remote_host):
    page, evil = app_page, remote_host.base
    remote_host.requests.clear()
    title = page.title()
    sandbox = page.show(unsanitised(evil), False)
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    page.wait_for_timeout(1500)  # time for any fetch to arrive (none may)
    assert remote_host.requests == [], remote_host.requests
    assert page.title() == title and page.dialogs == []

    # after "Load images": images (and media) load; stylesheets stay blocked by the app's own policy,
    # which the srcdoc frame inherits (the server's sanitiser drops <style> and <link> anyway)
    page.show(unsanitised(evil), True)
    for _ in range(100):
        if {f"{evil}/img.png", f"{evil}/inline.png"} <= set(remote_host.requests):
            break
        page.wait_for_timeout(100)
    loaded = set(remote_host.requests)
    assert {f"{evil}/img.png", f"{evil}/inline.png"} <= loaded, loaded
    # never scripts, frames or plugins, even then
    assert not loaded & {f"{evil}/script.js", f"{evil}/fetch", f"{evil}/frame", f"{evil}/object"}, loaded
    assert page.title() == title and page.dialogs == []
    assert not [url for url in loaded if re.search(r"/(script\.js|fetch)$", url)]
