"""The ``wiki`` dataset: real Wikipedia articles from gensim's test data.

The sample (``enwiki-latest-pages-articles1...-shortened.bz2``) ships inside
the gensim wheel, so perplexity and calibration work offline on real
encyclopaedic prose. Articles are read in file order with gensim's
``extract_pages`` and reduced to plain text with ``filter_wiki``; redirects and
empty articles are dropped. Article i (counting kept articles from 0) is
``test`` when i % 5 == 0, ``validation`` when i % 5 == 1 and ``train``
otherwise.

Parsing takes about two seconds, so the result is kept in memory and in a
JSON file under the slimformer cache, keyed by the source file and the
cleaning rules, so later runs load it at once.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import hashlib
import json
import re
from pathlib import Path

from slimformer.data.gensim_files import gensim_test_file
from slimformer.data.splits import modulo_splits
from slimformer.data.types import TextDataset

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
CLEANING_VERSION = 1  # bump when clean_article changes, so stale disk caches are ignored

_HEADING = re.compile(r"^\s*(=+)\s*(.*?)\s*\1\s*$")
_EMPTY_ITEM = re.compile(r"^[*#:;]+\s*$")
_MARKUP_QUOTES = re.compile(r"'{2,}")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


def wiki_source() -> Path:
    """The bz2 dump inside the installed gensim package."""
    return gensim_test_file(WIKI_FILE, "wiki")


def load_wiki() -> TextDataset:
    """The ``wiki`` dataset with fresh lists, so callers may edit them freely."""
    articles = wiki_articles()
    splits = modulo_splits(articles)
    return TextDataset(name="wiki", splits=splits, source=f"gensim test data: {WIKI_FILE}")


@functools.lru_cache(maxsize=1)
def wiki_articles() -> tuple[str, ...]:
    """The cleaned article texts in file order, parsed once per process."""
    path = wiki_source()
    cache = _disk_cache_path(path)
    cached = _read_disk_cache(cache)
    if cached is not None:
        return cached
    articles = tuple(parse_articles(path))
    _write_disk_cache(cache, articles)
    return articles


def parse_articles(path: Path) -> list[str]:
    """Plain-text articles from a MediaWiki XML dump, without redirects or empty pages."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    articles = []
    with bz2.open(path, "rb") as dump:
        for _title, markup, _page_id in extract_pages(dump):
            if markup.lstrip().lower().startswith("#redirect"):
                continue
            text = clean_article(filter_wiki(markup))
            if text:
                articles.append(text)
    return articles


def clean_article(text: str) -> str:
    """Tidy what ``filter_wiki`` leaves: quote markup, heading signs, empty list items.

    Paragraph breaks are kept (one blank line), because a language model reads
    them; runs of spaces and blank lines, which are markup debris, are not.
    """
    lines = []
    for raw in text.splitlines():
        line = _SPACES.sub(" ", _MARKUP_QUOTES.sub("", raw)).strip()
        heading = _HEADING.match(line)
        if heading:
            line = heading.group(2)
        if _EMPTY_ITEM.match(line):
            continue
        lines.append(line)
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _disk_cache_path(source: Path) -> Path:
    """A cache file name that changes whenever the source or the cleaning rules change."""
    from slimformer.paths import cache_dir

    stat = source.stat()
    key = f"{source.name}:{stat.st_size}:{stat.st_mtime_ns}:{CLEANING_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "datasets" / f"wiki-{digest}.json"


def _read_disk_cache(path: Path) -> tuple[str, ...] | None:
    """The cached articles, or None when absent or unreadable (then we just parse again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        return None
    return tuple(data)


def _write_disk_cache(path: Path, articles: tuple[str, ...]) -> None:
    """Best effort: a read-only home must not stop the dataset from loading."""
    from slimformer.paths import atomic_file

    with contextlib.suppress(OSError), atomic_file(path) as tmp:
        tmp.write_text(json.dumps(list(articles), ensure_ascii=False), encoding="utf-8")
