"""The admin console in a real headless Chromium against real nodes: sign in, purge a prefix
across two nodes sharing a real redis-server and watch both acknowledge, look up an entry, a
wrong token refused, and the whole round without JavaScript."""

from __future__ import annotations

import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.cluster.conftest import RedisServer, live, prime, put, start_node, until, x_cache
from tests.conftest import ADMIN_TOKEN
from tests.console.conftest import Browser, rows, shot, sign_in, text_of, wait_for
from tests.e2e.conftest import Running, start_proxy, stop

NAMES = ("node-a", "node-b")
# Bans retire sooner (twice the memory TTL + 1 s after they are made, swept every 0.2 s), so
# following a purge until "done" takes about a second.
QUICK_SWEEP = "memory_ttl_seconds = 0.1\neviction_interval_seconds = 0.2\n"


def test_purge_a_prefix_across_two_nodes_and_look_up_an_entry(
        tmp_path: Path, origin_process: Running, redis_server: RedisServer,
        browser: Browser, screenshots: Path) -> None:
    paths = ["/c/p/a.bin", "/c/p/b.bin", "/c/keep.bin"]
    for path in paths:
        put(origin_process, path, path.encode() * 100)
    # node-a, whose console is used, runs a supervisor and two workers: the console lives in
    # the supervisor there, with the cluster membership and the admin listener.
    nodes = [start_node(tmp_path, origin_process, redis_server, name, cache_extra=QUICK_SWEEP,
                        workers=2 if name == "node-a" else 1) for name in NAMES]
    try:
        until(lambda: live(nodes[0]) == set(NAMES), "node-a sees both nodes live")
        prime(nodes, paths)
        driver = browser()

        sign_in(driver, nodes[0].admin_url, ADMIN_TOKEN)
        wait_for(driver, lambda d: d.current_url.endswith("/console/"), "the overview")
        # The overview's script polls: both nodes appear with a heartbeat, and the counters.
        wait_for(driver, lambda d: sorted(r[0] for r in rows(d, "nodes")
                                          if r[2:] == ["live"]) == list(NAMES),
                 "both nodes live in the overview")
        assert text_of(driver, '[data-field="entries"]') == "3"
        assert any(r[0] == "HIT" and int(r[1]) >= 2 for r in rows(driver, "requests"))
        shot(driver, screenshots, "02-overview")

        driver.find_element(By.LINK_TEXT, "Purge").click()
        driver.find_element(By.ID, "kind-prefix").click()
        driver.find_element(By.ID, "value").send_keys("/c/p/")
        driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
        wait_for(driver, lambda d: "Confirm purge" in d.title, "the purge preview")
        # The preview counts this node's entries under the prefix before anything is purged.
        assert text_of(driver, "[data-covers-entries]") == "2"
        assert "(2000 bytes)" in text_of(driver, "p.covers")
        assert x_cache(nodes[1], "/c/p/a.bin") == "HIT"
        shot(driver, screenshots, "03-purge-preview")

        driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        wait_for(driver, lambda d: "Purge progress" in d.title, "the purge progress page")
        wait_for(driver, lambda d: rows(d, "nodes") == [["node-a", "applied"],
                                                        ["node-b", "applied"]],
                 "both nodes' acknowledgements, live")
        wait_for(driver, lambda d: text_of(d, '[data-field="state"]') == "done",
                 "the ban retired on this node")
        assert text_of(driver, '[data-field="sweep"]').startswith("retired")
        shot(driver, screenshots, "04-purge-progress")
        for node in nodes:
            assert x_cache(node, "/c/p/a.bin") == "MISS"
            assert x_cache(node, "/c/keep.bin") == "HIT"

        driver.find_element(By.LINK_TEXT, "Look up a URL").click()
        driver.find_element(By.ID, "url").send_keys("/c/keep.bin" + Keys.ENTER)
        wait_for(driver, lambda d: "/c/keep.bin" in text_of(d, "main h2"), "the look-up")
        facts = dict(zip([e.text for e in driver.find_elements(By.CSS_SELECTOR, "section dt")],
                         [e.text for e in driver.find_elements(By.CSS_SELECTOR, "section dd")],
                         strict=True))
        assert facts["State"] == "fresh" and facts["Stored status"] == "200"
        assert facts["Revision"] == "1" and facts["ETag"].startswith('"r1-')
        assert facts["Size"] == "1.1 KiB"
        shot(driver, screenshots, "05-lookup")
        # Purge it from there: straight to its progress page.
        driver.find_element(By.XPATH, "//button[text()='Purge this URL']").click()
        wait_for(driver, lambda d: "Purge progress" in d.title, "the URL purge's progress")
        wait_for(driver, lambda d: len(rows(d, "nodes")) == 2 and all(
            r[1] == "applied" for r in rows(d, "nodes")), "both nodes applied the URL purge")
        assert x_cache(nodes[1], "/c/keep.bin") == "MISS"
    finally:
        for node in nodes:
            stop(node.proc)


def test_a_wrong_token_is_refused_and_the_console_works_without_javascript(
        tmp_path: Path, origin_process: Running, browser: Browser, screenshots: Path) -> None:
    put(origin_process, "/n/a.bin", b"a" * 300)
    node = start_proxy(tmp_path, origin_process.url, workers=1, cache_extra=QUICK_SWEEP,
                       extra=f'[admin]\ntoken = "{ADMIN_TOKEN}"\nnode_name = "solo"\n')
    try:
        prime([node], ["/n/a.bin"])
        driver = browser(javascript=False)
        sign_in(driver, node.admin_url, "not-the-admin-token")
        shot(driver, screenshots, "01-login-refused")
        wait_for(driver, lambda d: "not the admin token" in text_of(d, "main"),
                 "the refusal")
        assert driver.get_cookies() == []
        driver.get(node.admin_url + "/console/purge")
        assert driver.current_url.endswith("/console/login")  # no session, no console

        driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN + Keys.ENTER)
        wait_for(driver, lambda d: d.current_url.endswith("/console/"), "the overview")
        shot(driver, screenshots, "01-login-accepted-overview")
        (cookie,) = driver.get_cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert text_of(driver, '[data-field="entries"]') == "1"

        driver.find_element(By.LINK_TEXT, "Purge").click()
        driver.find_element(By.ID, "value").send_keys("/n/")  # prefix is the default choice
        driver.find_element(By.ID, "soft").click()
        driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
        wait_for(driver, lambda d: "Confirm purge" in d.title, "the purge preview")
        assert text_of(driver, "[data-covers-entries]") == "1"
        driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        wait_for(driver, lambda d: "Purge progress" in d.title, "the purge progress page")
        assert rows(driver, "nodes") == [["solo", "applied"]]
        # Without JavaScript the page does not follow by itself: its Refresh link does.
        for _ in range(200):  # bounded: the ban retires within seconds
            if text_of(driver, '[data-field="state"]') == "done":
                break
            driver.find_element(By.LINK_TEXT, "Refresh").click()
            time.sleep(0.1)
        assert text_of(driver, '[data-field="state"]') == "done"
        assert x_cache(node, "/n/a.bin") == "REVALIDATED"  # soft: a 304 kept the body
        shot(driver, screenshots, "06-purge-progress-without-javascript")
    finally:
        stop(node.proc)
