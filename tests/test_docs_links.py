"""Every relative link in README.md and docs/ reaches a file of the repository, and a `#section`
a heading of that page (as GitHub names its anchors), so moving a page or renaming a heading
cannot leave a dead link behind."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: str) -> set:
    with open(path) as file:
        text = re.sub(r"```.*?```", "", file.read(), flags=re.S)  # a `#` comment in code is no heading
    return {github_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_github_anchor_matches_githubs_rule():
    assert github_anchor(" Figure 1a at CPU scale: upsampling a small dataset") == \
        "figure-1a-at-cpu-scale-upsampling-a-small-dataset"
    assert github_anchor("Pixels: SynthER in latent space (V-D4RL, paper Table 4)") == \
        "pixels-synther-in-latent-space-v-d4rl-paper-table-4"


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_reach_a_file_and_a_heading(page):
    with open(os.path.join(ROOT, page)) as file:
        links = LINK.findall(file.read())
    dead = []
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target or os.path.basename(page)))
        if not os.path.exists(path) or (anchor and anchor not in anchors(path)):
            dead.append(link)
    assert not dead, f"{page} links to what does not exist: {dead}"
