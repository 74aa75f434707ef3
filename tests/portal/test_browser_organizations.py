"""Organisations in a real browser (headless Chromium against uvicorn): create a team, the header's
switcher, add a member as reviewer, switch back, a key with only the read scope; and the same in
Chinese."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from accounts.models import Membership, Organization
from accounts.roles import Role
from accounts.scope import personal_organization
from tests.portal.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _create_team(page, name: str, *, button: str) -> None:
    page.fill("#organization-new-name", name)
    page.locator("#new-organization button[type=submit]", has_text=button).click()
    expect(page.locator("#org-select option:checked")).to_have_text(name)


def _switch(page, organization: Organization) -> None:
    with page.expect_navigation():
        page.select_option("#org-select", str(organization.pk))  # autosubmits, like the language select


def _create_read_key(page, name: str, *, button: str) -> None:
    page.fill("#key-name", name)
    page.check("#scope-read")
    page.uncheck("#scope-write")
    page.locator("main button[type=submit]", has_text=button).click()
    expect(page.locator("#raw-key")).to_contain_text("dp_")


def test_team_organization_members_switcher_and_a_read_key(new_page, portal_user) -> None:
    """GIVEN a member WHEN they create a team organisation THEN the header's switcher shows it;
    they add a second user as reviewer (who then finds the team in their own switcher, with the
    Review link there); they switch back to their personal organisation, whose name the header
    shows, and create a key with only the read scope, listed with "read" and not "write"."""
    owner = portal_user(Role.MEMBER, name="owner")
    second = portal_user(Role.MEMBER, name="second")
    team_name = f"Team {time.monotonic_ns()}"
    page = new_page()
    login(page, owner)
    expect(page.locator("#org-select option:checked")).to_contain_text(owner.username)
    expect(page.locator("nav.mainnav")).not_to_contain_text("Review")

    page.click("nav.mainnav >> text=Organisation")
    expect(page).to_have_url(re.compile(r"/organization/$"))
    _create_team(page, team_name, button="Create organisation")
    expect(page.locator("h1")).to_have_text(team_name)
    expect(page.locator("#my-role")).to_have_text("Administrator")
    expect(page.locator(".messages")).to_contain_text("created")
    expect(page.locator("nav.mainnav")).to_contain_text("Review")  # an admin of the team reviews there
    team = Organization.objects.get(name=team_name)

    page.fill("#member-username", second.username)
    page.select_option("#member-role", "reviewer")
    page.click("#member-add button[type=submit]")
    expect(page.locator(".messages")).to_contain_text(f"{second.username} added.")
    row = page.locator(f"#member-list tr[data-user='{second.username}']")
    expect(row.locator(".member-role")).to_have_text("Reviewer")
    assert Membership.objects.get(user=second, organization=team).role == "reviewer"
    screenshot(page, "organization")

    other = new_page()
    login(other, second)
    expect(other.locator("#org-select")).to_contain_text(team_name)
    expect(other.locator("nav.mainnav")).not_to_contain_text("Review")  # a member where they are
    _switch(other, team)
    expect(other.locator("#org-select option:checked")).to_have_text(team_name)
    expect(other.locator("nav.mainnav")).to_contain_text("Review")

    _switch(page, personal_organization(owner))
    expect(page).to_have_url(re.compile(r"/organization/$"))  # the same page, now of the other one
    expect(page.locator("#org-select option:checked")).to_contain_text(owner.username)
    expect(page.locator("#org-select option:checked")).to_contain_text("(personal)")
    expect(page.locator("h1")).to_have_text(owner.username)
    expect(page.locator("#member-list")).not_to_contain_text(second.username)

    page.click("nav.mainnav >> text=API keys")
    expect(page.locator("#key-organization")).to_contain_text(owner.username)
    _create_read_key(page, "read only", button="Create key")
    key_row = page.locator("#key-list tr", has_text="read only")
    expect(key_row.locator(".key-scopes")).to_have_text("read")
    expect(key_row.locator(".key-expiry")).to_contain_text("never")
    screenshot(page, "api-keys-scopes")


def test_the_same_flow_in_chinese(new_page, portal_user) -> None:
    """The organisation page, the switcher and the keys page in Simplified Chinese, chosen with
    the page's language select: translated headings, the key's scope still the API's "read"."""
    owner = portal_user(Role.MEMBER, name="owner-zh")
    second = portal_user(Role.MEMBER, name="second-zh")
    team_name = f"团队 {time.monotonic_ns()}"
    page = new_page()
    login(page, owner)
    page.select_option("#lang-select", "zh-hans")
    page.wait_for_load_state()
    expect(page.locator("nav.mainnav")).to_contain_text("组织")
    expect(page.locator("#org-select option:checked")).to_contain_text("(个人)")

    page.click("nav.mainnav >> text=组织")
    expect(page.locator("#new-organization h2")).to_have_text("创建团队组织")
    expect(page.locator("#members h2")).to_have_text("成员")
    expect(page.locator("#usage h2")).to_have_text("API 用量（最近 30 天）")
    _create_team(page, team_name, button="创建组织")
    expect(page.locator(".messages")).to_contain_text("您是其管理员")
    expect(page.locator("#my-role")).to_have_text("管理员")
    expect(page.locator("#audit h2")).to_have_text("审计记录")
    expect(page.locator("#audit-export")).to_have_text("导出 CSV")

    page.fill("#member-username", second.username)
    page.select_option("#member-role", "reviewer")
    page.locator("#member-add button[type=submit]").click()
    expect(page.locator(".messages")).to_contain_text(f"已添加 {second.username}")
    expect(page.locator(f"#member-list tr[data-user='{second.username}'] .member-role")).to_have_text(
        "审核员"
    )

    _switch(page, personal_organization(owner))
    expect(page.locator("#org-select option:checked")).to_contain_text(owner.username)
    expect(page.locator(".messages")).to_contain_text("您现在在")

    page.click("nav.mainnav >> text=API 密钥")
    expect(page.locator("h1")).to_have_text("API 密钥")
    expect(page.locator("#key-scopes legend")).to_have_text("权限范围")
    expect(page.locator("#key-organization")).to_contain_text("属于组织")
    _create_read_key(page, "只读", button="创建密钥")
    expect(page.locator("#key-list thead")).to_contain_text("权限范围")
    key_row = page.locator("#key-list tr", has_text="只读")
    expect(key_row.locator(".key-scopes")).to_have_text("read")
    expect(key_row.locator(".key-expiry")).to_contain_text("从未")
    screenshot(page, "api-keys-scopes-zh")
