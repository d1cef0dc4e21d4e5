"""The dashboard in headless Chromium against the test bed: the local control plane, SecantusDB, the real operator
process and real sync pods (the pod runner), with the API serving the page over HTTP on loopback.

What a data engineer does with it: signs in (viewer or admin, a wrong token is sent back to sign-in), reads the job
table (it matches the API), triggers a run and watches its progress bar move through the pod's real progress writes
until it ends `success`, pauses and resumes a job, cancels a run; a viewer sees no action controls and a viewer's
forged request is refused by the API; with the API briefly down the page says so and recovers.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from pymongo.database import Database

from syncjob import mongo
from tests.dashboard.conftest import ADMIN, VIEWER, Api, OperatorProcess, SyncJobs, WebApi, shoot, sign_in
from tests.operator.conftest import eventually
from tests.operator.test_honest_runs import real_sync


def ready(syncjobs: SyncJobs, name: str) -> None:
    eventually(lambda: (syncjobs.ready(name) or {}).get("status") == "True", 30, f"{name} Ready")


def row(page: Page, name: str) -> Any:
    return page.locator(f"tr[data-job='{name}']")


def bar(card: Any) -> int | None:
    """The progress bar's value on a run's card; None once the card has left the list."""
    if card.count() == 0:
        return None
    try:
        return int(card.get_by_test_id("progress").get_attribute("aria-valuenow", timeout=1000) or 0)
    except Exception:  # the card left the list between the count and the read
        return None


def trigger_from_the_page(page: Page, web: WebApi, name: str) -> Any:
    """Trigger a job from the job table (the answer shown is 200) and open its card in Runs now."""
    page.goto(f"{web.url}/dashboard/#/jobs")
    row(page, name).locator("button[data-action=trigger]").click()
    expect(page.get_by_test_id("answer")).to_have_attribute("data-status", "200")
    page.click("a[href='#/runs']")
    card = page.locator("article.card").filter(has_text=name)
    expect(card).to_be_visible(timeout=30_000)
    return card


def test_a_viewer_reads_the_job_table_as_the_api_serves_it_and_has_no_action_controls(
        web: WebApi, api: Api, page: Page, mongo_db: Database[Any]) -> None:
    for i, (task, sources) in enumerate([("daily", ["tushare", "akshare", "file"]), ("quotes", ["file"]),
                                         ("basics", ["baostock", "file"])]):
        api.create_syncjob(f"view-{i}", task=task, sources=sources, schedule="30 16 * * 1-5",
                           displayName=f"同步 {i}" if i == 0 else None)
    now = dt.datetime.now(dt.UTC)
    api.add_execution("view-0-1", "view-0", status="success", execution_time=12.5, now=now - dt.timedelta(hours=2))
    api.add_execution("view-0-2", "view-0", status="failed", execution_time=3.0, error_message="boom",
                      now=now - dt.timedelta(hours=1))
    for i, status in enumerate(["success"] * 9 + ["cancelled", "success", "failed"]):  # older than 7 days
        api.add_execution(f"view-2-{i}", "view-2", status=status, execution_time=20.0 + 3 * i,
                          now=now - dt.timedelta(days=20 - i))

    sign_in(page, web, "wrong-token-" + "x" * 20)
    expect(page.get_by_test_id("signin-error")).to_contain_text("401")
    expect(page.locator("#token")).to_be_visible()  # still the sign-in page

    sign_in(page, web, VIEWER)
    expect(page.get_by_test_id("user")).to_have_attribute("data-role", "viewer")
    table = page.get_by_test_id("jobs")
    expect(table.locator("tbody tr")).to_have_count(3)
    served = api.get("/jobs").json()["data"]
    shown = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.job)")
    assert sorted(shown) == sorted(j["id"] for j in served)  # id: the SyncJob's name (name: the human one)
    first = row(page, "view-0")
    expect(first).to_contain_text("同步 0")  # display name
    expect(first).to_contain_text("1. tushare")  # sources in order
    expect(first).to_contain_text("30 16 * * 1-5")  # the cron and its words
    expect(first).to_contain_text("星期一至星期五")
    expect(first.locator(".strip .mark")).to_have_count(2)
    expect(first).to_contain_text("50%")  # success rate over 7 days: 1 of 2 judged
    expect(page.locator("button[data-action]")).to_have_count(0)  # no action controls for a viewer
    expect(row(page, "view-2").locator(".strip .mark")).to_have_count(12)
    shoot(page, "jobs")

    page.select_option("select[name=task]", "quotes")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(row(page, "view-1")).to_be_visible()
    page.select_option("select[name=task]", "")
    page.fill("input[name=q]", "view-2")
    expect(table.locator("tbody tr")).to_have_count(1)

    page.goto(f"{web.url}/dashboard/#/jobs/{api.namespace}/view-0")
    expect(page.get_by_test_id("next-runs").locator("li")).to_have_count(10)
    expect(page.locator("button[data-action]")).to_have_count(0)
    # a forged request with the viewer's token is refused by the API itself
    forged = web.post(f"/jobs/view-0/trigger?namespace={api.namespace}", VIEWER)
    assert forged.status_code == 403, forged.text
    page.get_by_test_id("lang").click()
    expect(page.get_by_role("heading", name="Next 10 runs")).to_be_visible()


def test_an_admin_runs_pauses_resumes_and_cancels_from_the_page_with_live_progress(
        web: WebApi, api: Api, page: Page, operator: OperatorProcess, syncjobs: SyncJobs,
        mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("live-run", delay=1.5, options={"progress_interval_seconds": 1}))
    # ~60 s: still running when the page's second trigger and its cancel arrive, however slow the machine
    syncjobs.create(real_sync("slow-run", delay=10))
    ready(syncjobs, "live-run")
    ready(syncjobs, "slow-run")
    page.on("dialog", lambda d: d.accept("stuck, says the test") if d.type == "prompt" else d.accept())

    sign_in(page, web, ADMIN)
    expect(page.get_by_test_id("user")).to_have_attribute("data-role", "admin")
    expect(row(page, "live-run")).to_be_visible()
    shoot(page, "jobs-admin")

    # trigger from the page; the answer is shown; the bar moves through the pod's real progress writes
    row(page, "live-run").locator("button[data-action=trigger]").click()
    expect(page.get_by_test_id("answer")).to_have_attribute("data-status", "200")
    page.click("a[href='#/runs']")
    card = page.locator("article.card").filter(has_text="live-run")
    expect(card).to_be_visible(timeout=30_000)
    live_id = card.get_attribute("data-run")
    seen: list[int] = []
    delays: list[float] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if (value := bar(card)) is None:
            break
        if not seen or value != seen[-1]:
            seen.append(value)
            if len(seen) == 3:
                shoot(page, "runs-live")
        # the delay between the pod's progress write and the bar: compare with the record as stored
        doc = mongo_db[mongo.EXECUTIONS].find_one({"job_id": "live-run", "status": "running"}, {"progress": 1})
        if doc is not None and round(float(doc.get("progress") or 0)) != value:
            changed = time.monotonic()
            want = round(float(doc.get("progress") or 0))
            try:  # the bar shows this write (or a later one) within 2 s, or the run has ended meanwhile
                page.wait_for_function(
                    "([sel, want]) => { const bar = document.querySelector(sel);"
                    " return !bar || Number(bar.getAttribute('aria-valuenow')) >= want - 1 }",
                    arg=[f"article.card[data-run='{live_id}'] [role=progressbar]", want], timeout=2000, polling=20)
                delays.append(time.monotonic() - changed)
            except PlaywrightTimeout as exc:
                raise AssertionError(f"the bar did not show progress {want} within 2 s of the write") from exc
        time.sleep(0.1)
    assert len([v for v in seen if 0 < v < 100]) >= 2, f"the bar did not move through progress writes: {seen}"
    assert seen == sorted(seen), seen
    finished = page.get_by_test_id("finished").locator("tr").filter(has_text="live-run").first
    expect(finished).to_have_attribute("data-status", "success", timeout=30_000)
    assert all(d <= 2.0 for d in delays), delays
    finished.locator("a").click()
    expect(page.get_by_test_id("run")).to_have_attribute("data-status", "success")
    expect(page.get_by_test_id("attempts")).to_contain_text("file")
    expect(page.get_by_test_id("run")).to_contain_text("adam")  # who asked, from the trigger's audit entry
    expect(page.get_by_test_id("task-report")).to_contain_text("last_trading_day")  # the daily task's report
    shoot(page, "run")

    # pause and resume flip the row, and each appears in the job's history at once
    page.goto(f"{web.url}/dashboard/#/jobs")
    row(page, "live-run").locator("button[data-action=pause]").click()
    expect(row(page, "live-run")).to_have_attribute("data-paused", "true")
    row(page, "live-run").locator("button[data-action=resume]").click()
    expect(row(page, "live-run")).to_have_attribute("data-paused", "false")
    assert syncjobs.get("live-run")["spec"].get("paused") is False
    page.goto(f"{web.url}/dashboard/#/jobs/{api.namespace}/live-run")
    history = page.get_by_test_id("history")
    expect(history.locator("tr[data-action=resume]")).to_have_count(1)
    expect(history.locator("tr[data-action=pause]")).to_have_count(1)
    expect(history.locator("tr[data-action=trigger]")).to_have_count(1)
    shoot(page, "job")

    # cancel a running run from its card (confirmed): it ends cancelled
    slow = trigger_from_the_page(page, web, "slow-run")
    eventually(lambda: (mongo_db[mongo.EXECUTIONS].find_one({"job_id": "slow-run"}) or {}).get("attempt"), 30,
               "the slow run's pod to begin")
    # a second trigger while the run is active, under concurrencyPolicy Forbid: the API's 409 is shown verbatim
    page.goto(f"{web.url}/dashboard/#/jobs")
    row(page, "slow-run").locator("button[data-action=trigger]").click()
    expect(page.get_by_test_id("answer")).to_have_attribute("data-status", "409")
    expect(page.get_by_test_id("answer")).to_contain_text("concurrencyPolicy Forbid and a run is active")
    page.click("a[href='#/runs']")
    slow = page.locator("article.card").filter(has_text="slow-run")
    expect(slow).to_be_visible(timeout=30_000)
    slow.locator("button[data-action=cancel]").click()
    expect(page.get_by_test_id("answer")).to_have_attribute("data-status", "200")
    cancelled = page.get_by_test_id("finished").locator("tr").filter(has_text="slow-run").first
    expect(cancelled).to_have_attribute("data-status", "cancelled", timeout=60_000)

    # a second cancel of the finished run: the API's 409 is shown verbatim
    run_id = cancelled.get_attribute("data-run")
    page.goto(f"{web.url}/dashboard/#/runs/{run_id}")
    expect(page.get_by_test_id("run")).to_have_attribute("data-status", "cancelled")
    answer = web.post(f"/executions/{run_id}/cancel", ADMIN)
    assert answer.status_code == 409
    page.locator("button[data-action=delete]").click()  # confirmed; the record is gone
    expect(page.get_by_test_id("answer")).to_contain_text("执行记录已删除")  # the API's message, verbatim
    assert mongo_db[mongo.EXECUTIONS].find_one({"_id": run_id}) is None

    # edit the display name; the history shows every action at once
    page.goto(f"{web.url}/dashboard/#/jobs/{api.namespace}/slow-run")
    page.click("button[data-action=edit]")
    page.fill("input[name=display_name]", "慢速同步")
    page.click("form.edit button[type=submit]")
    expect(page.get_by_role("heading", level=1)).to_contain_text("慢速同步")
    history = page.get_by_test_id("history")
    for action in ("trigger", "cancel", "delete", "metadata"):
        expect(history.locator(f"tr[data-action='{action}']").first).to_be_visible()
    print(f"\nprogress → bar delays (s): {[round(d, 2) for d in delays]}; bar values seen: {seen}")


def test_the_page_shows_a_banner_while_the_api_is_down_and_recovers(web: WebApi, api: Api, page: Page) -> None:
    api.create_syncjob("outage", schedule="0 9 * * 1-5")
    sign_in(page, web, VIEWER)
    expect(row(page, "outage")).to_be_visible()
    page.click("a[href='#/health']")
    expect(page.locator("[data-component=mongodb]")).to_have_attribute("data-ok", "true")
    expect(page.get_by_test_id("banner")).to_contain_text("operator")  # no operator runs here: a clear banner
    shoot(page, "health")
    web.stop()
    expect(page.get_by_test_id("banner")).to_contain_text("API", timeout=15_000)
    web.start()
    expect(page.get_by_test_id("banner")).not_to_contain_text("API", timeout=15_000)
    page.click("a[href='#/jobs']")
    expect(row(page, "outage")).to_be_visible()
    assert page.get_by_test_id("user").is_visible()  # still signed in: the token outlived the outage


def test_an_unknown_token_in_the_session_returns_to_sign_in_with_a_message(web: WebApi, api: Api,
                                                                           page: Page) -> None:
    page.goto(f"{web.url}/dashboard/")
    page.evaluate("t => sessionStorage.setItem('syncjob.token', t)", "expired-token-" + "y" * 20)
    page.reload()
    expect(page.locator("#token")).to_be_visible()
    expect(page.get_by_test_id("signin-error")).to_contain_text("Invalid or expired token")
    shoot(page, "signin")


def test_with_the_event_stream_blocked_the_page_polls_and_still_shows_progress_and_the_verdict(
        web: WebApi, api: Api, page: Page, operator: OperatorProcess, syncjobs: SyncJobs,
        mongo_db: Database[Any]) -> None:
    """A proxy that blocks Server-Sent Events: the page falls back to polling GET /dashboard/running every 2 s."""
    syncjobs.create(real_sync("polled-run", delay=2, options={"progress_interval_seconds": 1}))
    ready(syncjobs, "polled-run")
    page.route("**/api/scheduler/stream/runs*", lambda route: route.abort())
    sign_in(page, web, ADMIN)
    page.click("a[href='#/runs']")
    badge = page.get_by_test_id("live")
    expect(badge).to_have_attribute("data-mode", "polling", timeout=30_000)  # after 3 failed connections
    expect(badge).to_contain_text("轮询")

    card = trigger_from_the_page(page, web, "polled-run")
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (value := bar(card)) is not None:
        if not seen or value != seen[-1]:
            seen.append(value)
        time.sleep(0.2)
    assert len([v for v in seen if 0 < v < 100]) >= 2, f"the bar did not move while polling: {seen}"
    finished = page.get_by_test_id("finished").locator("tr").filter(has_text="polled-run").first
    expect(finished).to_have_attribute("data-status", "success", timeout=30_000)
    assert mongo_db[mongo.EXECUTIONS].find_one({"job_id": "polled-run"})["status"] == "success"
    expect(badge).to_have_attribute("data-mode", "polling")  # the stream stayed blocked throughout
