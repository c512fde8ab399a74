#!/usr/bin/env python3
"""finrep reference workloads (../shared/BENCHMARKS.md), run by scripts/bench.sh.

  bench.py parse --finrep-bench CMD --runs 5     benchmark P: finrep vs feedparser
  bench.py w1 --finrep BIN --database-url URL    benchmark W1 (collect + extract + compose)
  bench.py w3 --finrep BIN --database-url URL    benchmark W3 (the console under load, wrk)
  bench.py w4 --finrep BIN --database-url URL    benchmark W4 (twenty reports at one slot)

Every server is on loopback; every loop is bounded. Results are printed as JSON and
appended to docs/bench-results/<workload>.json.
"""
import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent


def report_date(days_ahead):
    """A run's --date: today in the reports' zone (Asia/Shanghai, their default) or later, so
    the lookback ends at the run's start (an earlier day's run looks back from its slot)."""
    from zoneinfo import ZoneInfo
    return (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=days_ahead)).date().isoformat()

COMPANIES = ["贵州茅台(600519)", "宁德时代(300750.SZ)", "中国平安(601318)", "招商银行(600036)",
             "比亚迪(002594)", "腾讯控股(00700.HK)", "阿里巴巴(9988.HK)", "美团(03690.HK)",
             "英伟达(NVDA.O)", "苹果(AAPL.O)", "特斯拉(TSLA.O)", "隆基绿能(601012)",
             "中芯国际(688981)", "东方财富(300059)", "五粮液(000858)", "小米集团(01810.HK)"]
EVENTS = ["发布三季度业绩预告，净利润同比增长{n}%", "拟回购不超过{n}亿元股份", "获北向资金净买入{n}亿元",
          "股价盘中涨超{n}%", "公告重大资产重组进展", "与合作方签署{n}亿元战略协议",
          "董事长增持{n}万股", "新产品发布，市场预期营收增长{n}%", "遭遇监管问询，涉及金额{n}亿元",
          "海外业务收入占比提升至{n}%"]
MACRO = ["央行开展{n}亿元逆回购操作", "国家统计局：10月CPI同比上涨{n}%", "财政部发行{n}亿元特别国债",
         "外汇局：10月末外汇储备{n}亿美元", "美联储官员暗示年内或再降息{n}个基点", "欧洲央行维持利率不变，通胀预期{n}%"]
CATEGORIES = ["宏观", "A股", "港股", "美股", "行业", "公告"]
PREFIXES = ["", "【快讯】", "突发：", "", "（更新）"]


def story(rng, i):
    if rng.random() < 0.3:
        return rng.choice(MACRO).format(n=rng.randint(2, 900))
    return rng.choice(COMPANIES) + rng.choice(EVENTS).format(n=rng.randint(2, 300)) + f"（{i}）"


def description(rng, title):
    body = "".join(f"<p>{escape(title)}。据公司公告及市场人士分析，该事项对行业格局有一定影响，"
                   f"投资者需关注后续进展与风险提示。成交额{rng.randint(10, 999)}亿元。</p>" for _ in range(1))
    return (body + f'<p><a href="https://bench.example.com/more/{rng.randint(1, 10**9)}">阅读全文</a>'
            f'<img src="https://track.example.com/p.gif?id={rng.randint(1, 10**9)}" width="1" height="1"></p>')


def item_dicts(rng, titles, now, prefix):
    out = []
    for k, title in enumerate(titles):
        published = now - timedelta(minutes=rng.randint(5, 20 * 60))
        link = f"https://{prefix}.example.com/a/{k}-{rng.randint(1, 10**9)}.html?utm_source=rss&spm=x.y"
        out.append({"title": title, "link": link, "published": published,
                    "description": description(rng, title), "article": article(rng, title)})
    return out


def article(rng, title):
    """A whole article as feeds carry it in `content:encoded` or Atom `content`: headings,
    paragraphs, a table, a figure, a script (about 3-5 KB)."""
    paras = "".join(f"<p>{escape(title)}。第{n}段：据公司公告，报告期内营业收入{rng.randint(10, 999)}亿元，"
                    f"同比增长{rng.randint(1, 80)}%；分析师认为，<strong>行业景气度</strong>仍在回升，"
                    f"<a href=\"https://bench.example.com/r/{rng.randint(1, 10**9)}\">研报原文</a>。</p>"
                    for n in range(rng.randint(6, 12)))
    table = "".join(f"<tr><td>{y}</td><td>{rng.randint(1, 999)}.{rng.randint(0, 99)}</td></tr>" for y in range(2019, 2026))
    return (f"<h2>{escape(title)}</h2>{paras}<table><tr><th>年份</th><th>营收（亿元）</th></tr>{table}</table>"
            f'<figure><img src="https://img.example.com/{rng.randint(1, 10**9)}.jpg" alt="图表"><figcaption>数据来源：公司公告</figcaption></figure>'
            f"<script>window._t&&_t.push(['{rng.randint(1, 10**9)}'])</script>")


def render(fmt, items, name):
    if fmt == "rss2":
        body = "".join(
            f"<item><title>{escape(i['title'])}</title><link>{escape(i['link'])}</link>"
            f"<guid isPermaLink=\"false\">{rng_guid(i)}</guid><pubDate>{format_datetime(i['published'])}</pubDate>"
            f"<description><![CDATA[{i['description']}]]></description></item>" for i in items)
        return (f'<?xml version="1.0" encoding="{{enc}}"?><rss version="2.0"><channel><title>{name}</title>'
                f"<link>https://{name}.example.com/</link><description>bench</description>{body}</channel></rss>")
    if fmt == "rss2-content":
        body = "".join(
            f"<item><title>{escape(i['title'])}</title><link>{escape(i['link'])}</link>"
            f"<guid isPermaLink=\"false\">{rng_guid(i)}</guid><pubDate>{format_datetime(i['published'])}</pubDate>"
            f"<description>{escape(i['description'])}</description>"
            f"<content:encoded><![CDATA[{i['article']}]]></content:encoded></item>" for i in items)
        return (f'<?xml version="1.0" encoding="{{enc}}"?><rss version="2.0" '
                f'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>{name}</title>'
                f"<link>https://{name}.example.com/</link><description>bench</description>{body}</channel></rss>")
    if fmt in ("atom", "atom-content"):
        body = "".join(
            f"<entry><title>{escape(i['title'])}</title><id>{rng_guid(i)}</id><link href=\"{escape(i['link'])}\"/>"
            f"<updated>{i['published'].isoformat()}</updated><summary type=\"html\">{escape(i['description'])}</summary>"
            + (f"<content type=\"html\">{escape(i['article'])}</content>" if fmt == "atom-content" else "")
            + "</entry>"
            for i in items)
        return (f'<?xml version="1.0" encoding="{{enc}}"?><feed xmlns="http://www.w3.org/2005/Atom"><title>{name}</title>'
                f"<id>urn:{name}</id><updated>{datetime.now(timezone.utc).isoformat()}</updated>{body}</feed>")
    if fmt == "rss1":
        body = "".join(
            f"<item rdf:about=\"{escape(i['link'])}\"><title>{escape(i['title'])}</title><link>{escape(i['link'])}</link>"
            f"<description>{escape(i['description'])}</description><dc:date>{i['published'].isoformat()}</dc:date></item>"
            for i in items)
        return (f'<?xml version="1.0" encoding="{{enc}}"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
                f'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
                f"<channel rdf:about=\"https://{name}.example.com/\"><title>{name}</title><link>https://{name}.example.com/</link>"
                f"<description>bench</description></channel>{body}</rdf:RDF>")
    if fmt == "jsonfeed":
        return json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": name, "items": [
            {"id": rng_guid(i), "url": i["link"], "title": i["title"], "content_html": i["description"],
             "date_published": i["published"].isoformat()} for i in items]}, ensure_ascii=False)
    raise ValueError(fmt)


def rng_guid(item):
    return f"guid-{abs(hash(item['link'])) % 10**12}"


def encode(text, enc):
    if enc == "utf-8":
        return text.replace("{enc}", "UTF-8").encode("utf-8")
    return text.replace("{enc}", enc.upper()).encode(enc)


# The shapes of the corpus, each measured on its own as well: a legacy-encoded XML file is of
# shape "gbk" whatever its format.
SHAPES = ["rss2", "rss2-content", "atom", "atom-content", "jsonfeed", "rss1", "gbk"]


def generate_corpus(out_dir, seed=7):
    """500 feeds x 50 items: 60% RSS 2.0 (half of them with whole articles in content:encoded),
    25% Atom (half with whole articles in content), 10% JSON Feed, 5% RSS 1.0; 20% GBK/GB18030.
    Files go to out_dir/<shape>/."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    n = sized(500, 20)
    formats = (["rss2"] * (n * 30 // 100) + ["rss2-content"] * (n * 30 // 100) + ["atom"] * (n * 13 // 100)
               + ["atom-content"] * (n * 12 // 100) + ["jsonfeed"] * (n * 10 // 100))
    formats += ["rss1"] * (n - len(formats))
    rng.shuffle(formats)
    xml_indices = [i for i, f in enumerate(formats) if f != "jsonfeed"]
    legacy = set(rng.sample(xml_indices, n // 5))  # 20%
    sizes = []
    for i, fmt in enumerate(formats):
        titles = [story(rng, i * 100 + k) for k in range(50)]
        items = item_dicts(rng, titles, now, f"s{i}")
        enc = ("gbk" if i % 2 else "gb18030") if i in legacy else "utf-8"
        data = encode(render(fmt, items, f"s{i}"), enc)
        ext = "json" if fmt == "jsonfeed" else "xml"
        shape_dir = Path(out_dir) / ("gbk" if enc != "utf-8" else fmt)
        shape_dir.mkdir(exist_ok=True)
        path = shape_dir / f"feed{i:03d}.{ext}"
        path.write_bytes(data)
        ctype = {"rss2": "application/rss+xml", "rss2-content": "application/rss+xml", "atom": "application/atom+xml",
                 "atom-content": "application/atom+xml", "rss1": "application/rdf+xml",
                 "jsonfeed": "application/feed+json"}[fmt]
        # Half of the legacy-encoded feeds declare their charset only in the XML declaration.
        if enc != "utf-8" and i % 4 == 1:
            ctype += f"; charset={enc}"
        path.with_suffix(".meta").write_text(ctype)
        sizes.append(len(data))
    return {"files": len(formats), "mean_kib": round(statistics.mean(sizes) / 1024, 1),
            "files_per_shape": {shape: formats.count(shape) for shape in SHAPES if shape != "gbk"} | {"gbk": len(legacy)}}


def machine():
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1), "cpu": cpu}


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


# --smoke: tiny sizes, one run, nothing recorded; proves every bench command still works
# (the test command runs it).
SMOKE = False


def sized(full, smoke):
    return smoke if SMOKE else full


def record(workload, result):
    if SMOKE:
        print(json.dumps({"smoke": workload, **result}, ensure_ascii=False))
        return
    out = ROOT / "docs" / "bench-results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), **result}
    with open(out / f"{workload}.json", "a") as f:
        f.write(json.dumps(result, ensure_ascii=False) + "\n")
    print(json.dumps(result, ensure_ascii=False, indent=2))


# ---------------------------------------------------------------- P

def feedparser_run(files):
    import feedparser  # installed by scripts/bench.sh into its venv
    started = time.perf_counter()
    items = 0
    for data, ctype in files:
        parsed = feedparser.parse(data, response_headers={"content-type": ctype})
        for e in parsed.entries:
            _ = (e.get("title"), e.get("link"), e.get("published_parsed") or e.get("updated_parsed"), e.get("summary"))
            items += 1
    seconds = time.perf_counter() - started
    return items, seconds


def finrep_parse_run(bench_cmd, files_dir, *reader):
    """One run of benchmark P's finrep side over a directory of feeds: its JSON line
    (`reader` "feed-rs": every feed through feed-rs, the reader of RSS and Atom before).
    One pass over a shape takes finrep 5 to 20 ms, shorter than this machine's noise, and a
    new process's first pass is cold where feedparser's interpreter is warm (it runs every
    shape, its modules and caches loaded). So the process makes six passes; the run is the
    median of the last five, and the first, cold pass is kept as `cold_items_per_second`."""
    out = subprocess.run(bench_cmd + [str(files_dir), "6", *reader], check=True, capture_output=True, text=True)
    passes = [json.loads(line) for line in out.stdout.strip().splitlines()[-6:]]
    warm = sorted(passes[1:], key=lambda p: p["items_per_second"])
    return {**warm[len(warm) // 2], "cold_items_per_second": passes[0]["items_per_second"]}


def bench_parse(args):
    corpus = Path(tempfile.mkdtemp(prefix="finrep-corpus-"))
    try:
        info = generate_corpus(corpus)
        shapes = {}
        for shape_dir in sorted(d for d in corpus.iterdir() if d.is_dir()):
            shapes[shape_dir.name] = [(p.read_bytes(), p.with_suffix(".meta").read_text())
                                      for p in sorted(shape_dir.iterdir()) if p.suffix != ".meta"]
        per_shape = {s: {"finrep": [], "finrep_cold": [], "feedparser": [], "xml": [], "feed_rs": []} for s in shapes}
        finrep_rates, fp_rates, finrep_items, fp_items, xml_shares = [], [], 0, 0, []
        feed_rs_rates = []
        for _ in range(sized(args.runs, 1)):
            # Alternate the two, shape by shape, so that machine noise hits both alike.
            f_items = f_secs = p_items = p_secs = parse_secs = r_items = r_secs = 0.0
            for shape, files in shapes.items():
                before = finrep_parse_run(args.finrep_bench, corpus / shape, "feed-rs")
                per_shape[shape]["feed_rs"].append(before["items_per_second"])
                r_items += before["items"]
                r_secs += before["seconds"]
                run = finrep_parse_run(args.finrep_bench, corpus / shape)
                per_shape[shape]["finrep"].append(run["items_per_second"])
                per_shape[shape]["finrep_cold"].append(run["cold_items_per_second"])
                per_shape[shape]["xml"].append(run["parse_seconds"] / run["seconds"])
                f_items += run["items"]
                f_secs += run["seconds"]
                parse_secs += run["parse_seconds"]
                items, seconds = feedparser_run(files)
                if items:
                    per_shape[shape]["feedparser"].append(items / seconds)
                p_items += items
                p_secs += seconds
            finrep_rates.append(f_items / f_secs)
            feed_rs_rates.append(r_items / r_secs)
            fp_rates.append(p_items / p_secs)
            xml_shares.append(parse_secs / f_secs)
            finrep_items, fp_items = int(f_items), int(p_items)
        import feedparser
        ratio = statistics.median(finrep_rates) / statistics.median(fp_rates)
        shape_results = {}
        for shape, r in per_shape.items():
            shape_results[shape] = {
                "files": len(shapes[shape]),
                "finrep_items_per_second": round(statistics.median(r["finrep"])),
                "feedparser_items_per_second": round(statistics.median(r["feedparser"])) if r["feedparser"] else None,
                "ratio": round(statistics.median(r["finrep"]) / statistics.median(r["feedparser"]), 1) if r["feedparser"] else None,
                "finrep_cold_process_items_per_second": round(statistics.median(r["finrep_cold"])),
                "feed_parser_share": round(statistics.median(r["xml"]), 2),
                "finrep_feed_rs_items_per_second": round(statistics.median(r["feed_rs"])),
            }
        record("P", {
            "finrep_bench": " ".join(args.finrep_bench),
            "workload": "P: 500 feeds x 50 items (60% RSS 2.0, half with content:encoded; 25% Atom, half with "
                        "content; 10% JSON Feed, 5% RSS 1.0; 20% GBK/GB18030)",
            "corpus": info,
            "finrep_items": finrep_items, "feedparser_items": fp_items,
            "finrep_items_per_second": summary(finrep_rates),
            "finrep_feed_rs_items_per_second": summary(feed_rs_rates),
            "feedparser_items_per_second": summary(fp_rates),
            "feedparser_version": feedparser.__version__,
            "ratio_median": round(ratio, 1),
            "feed_parser_share_of_finrep_time": round(statistics.median(xml_shares), 2),
            "shapes": shape_results,
        })
    finally:
        shutil.rmtree(corpus, ignore_errors=True)


# ---------------------------------------------------------------- W1

W1_IPS = [f"127.0.0.{i}" for i in range(10, 30)]


class W1Server:
    """Serves 200 sources on 20 loopback addresses with the workload's delays and faults."""

    def __init__(self, port, seed=11):
        self.port = port
        rng = random.Random(seed)
        now = datetime.now(timezone.utc)
        n, per = sized(200, 20), sized(50, 10)
        kinds = ["feed"] * (n * 75 // 100) + ["json"] * (n * 15 // 100)
        kinds += ["html"] * (n - len(kinds))
        faults = ["hang"] * (n * 5 // 100) + ["error"] * (n * 3 // 100) + ["malformed"] * (n * 2 // 100)
        faults += [None] * (n - len(faults))
        rng.shuffle(faults)
        # A pool of stories; 30% of them are carried by 2-4 sources with small variations.
        per_source = [[] for _ in range(n)]
        unique = 0
        while sum(len(s) for s in per_source) < n * per:
            title = story(rng, unique)
            unique += 1
            copies = rng.randint(2, 4) if rng.random() < 0.3 else 1
            for c, src in enumerate(rng.sample(range(n), copies)):
                if len(per_source[src]) < per:
                    variant = (rng.choice(PREFIXES) + title + ("" if c == 0 else rng.choice(["", "！", " 。", "｜快讯"])))
                    per_source[src].append(variant)
        self.sources = []
        for i in range(n):
            items = item_dicts(rng, per_source[i], now, f"w{i}")
            kind = kinds[i]
            fault = faults[i]
            if kind == "feed":
                body = encode(render("rss2", items, f"w{i}"), "gbk" if i % 5 == 0 else "utf-8")
                ctype = "application/rss+xml"
            elif kind == "json":
                body = json.dumps({"data": {"list": [
                    {"title": it["title"], "url": it["link"], "time": it["published"].isoformat(),
                     "digest": it["description"]} for it in items]}}, ensure_ascii=False).encode()
                ctype = "application/json; charset=utf-8"
            else:
                rows = "".join(f'<li><a href="{escape(it["link"])}">{escape(it["title"])}</a>'
                               f'<time datetime="{it["published"].isoformat()}"></time><p>{it["description"]}</p></li>'
                               for it in items)
                body = f'<html><head><meta charset="utf-8"></head><body><ul class="news">{rows}</ul></body></html>'.encode()
                ctype = "text/html"
            if fault == "malformed":
                body = body[: len(body) // 3]
            self.sources.append({"kind": kind, "fault": fault, "delay": rng.uniform(0.05, 0.5),
                                 "body": body, "ctype": ctype, "ip": W1_IPS[i % len(W1_IPS)]})
        answering = [s["delay"] for s in self.sources if s["fault"] != "hang"]
        self.slowest_answer = max(answering)

    async def handle(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            path = head.split(b" ", 2)[1].decode()
            i = int(path.rsplit("/", 1)[-1])
            s = self.sources[i]
            if s["fault"] == "hang":
                await asyncio.sleep(30)
                return
            await asyncio.sleep(s["delay"])
            status, body = ("500 Internal Server Error", b"error") if s["fault"] == "error" else ("200 OK", s["body"])
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {s['ctype']}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    def start(self):
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for ip in W1_IPS:
                loop.run_until_complete(asyncio.start_server(self.handle, ip, self.port, backlog=512))
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)

    def manifests(self, recipients=1):
        docs = []
        for i, s in enumerate(self.sources):
            url = f"http://{s['ip']}:{self.port}/s/{i}"
            spec = {"kind": s["kind"], "url": url, "category": CATEGORIES[i % 6], "weight": 1.0 + (i % 3) * 0.25,
                    "fetch": {"timeoutSeconds": 3}}
            if s["kind"] == "json":
                spec["json"] = {"items": "data.list", "title": "title", "link": "url", "published": "time",
                                "summary": "digest"}
            if s["kind"] == "html":
                spec["html"] = {"item": "ul.news li", "link": "a", "published": "time", "summary": "p"}
            docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "Source",
                         "metadata": {"name": f"src-{i:03d}", "labels": {"bench": "w1"}}, "spec": spec})
        for r in range(recipients):
            docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
                         "metadata": {"name": f"rcpt-{r:04d}", "labels": {"bench": "w1"}},
                         "spec": {"email": f"reader{r:04d}@example.com", "categories": [CATEGORIES[r % 4]] if r % 5 else []}})
        docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport", "metadata": {"name": "w1"},
                     "spec": {"title": "W1 基准日报", "content": {"lookbackHours": 24, "maxItems": 60,
                                                                "maxItemsPerSource": 5,
                                                                "sectionOrder": CATEGORIES},
                              "smtp": {"host": "127.0.0.1", "port": 2525, "tls": "none",
                                       "from": "bench@example.com"}}})
        return "\n---\n".join(json.dumps(d, ensure_ascii=False) for d in docs)


def run_measured(cmd, env, watch=None):
    """Runs cmd; returns (stdout, wall seconds, peak RSS in MiB) of that child alone.
    `watch(pid)`, when given, returns a context manager held while the child runs (a sampler
    of the child's process tree).

    posix_spawn (vfork-like) rather than fork: a forked child's high-water RSS would include
    this Python process's own memory, copied at fork time.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        pid = os.posix_spawn(cmd[0], cmd, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        with watch(pid) if watch else contextlib.nullcontext():
            _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            sys.stderr.write(err.read().decode(errors="replace"))
            raise SystemExit(f"{cmd[0]} failed with {code}")
        return out.read().decode(), wall, usage.ru_maxrss / 1024


def bench_w1(args):
    server = W1Server(args.port)
    server.start()
    config = Path(tempfile.mkdtemp(prefix="finrep-w1-"))
    try:
        (config / "w1.yaml").write_text(server.manifests())
        timeout = 3.0
        critical = max(server.slowest_answer, timeout if any(s["fault"] == "hang" for s in server.sources) else 0)
        args.runs = sized(args.runs, 1)
        ratios, walls, rss = [], [], []
        step_seconds = {}
        env = dict(os.environ, DATABASE_URL=args.database_url, FINREP_LOG_FORMAT="json", RUST_LOG="warn")
        pipeline = str(Path(args.finrep).with_name("finrep-pipeline"))
        whole_rss = []
        for run in range(args.runs):
            # Collect, extract and compose are measured here; delivery by w1-send. The run is
            # what a report's Job runs: `finrep plan` writes the day's plan as the controller
            # mounts it, `finrep-pipeline` runs it.
            plan = config / f"plan-{run}.yaml.gz"
            run_measured([args.finrep, "plan", "--config", str(config / "w1.yaml"), "--report", "w1",
                          "--date", report_date(run), "--output", str(plan)], env)
            cmd = [pipeline, "--plan", str(plan), "--allow-private-networks", "--recompose", "--no-send"]
            out, _, _ = run_measured(cmd, env)
            outcome = json.loads(out.strip().splitlines()[-1])
            # VmHWM as the process saw it (a child's ru_maxrss would include this Python
            # process's memory, inherited at fork).
            peak = outcome["peakRssKib"] / 1024
            steps = {s["step"]: s for s in outcome["steps"]}
            start = datetime.fromisoformat(steps["collect"]["started"])
            end = datetime.fromisoformat(steps["compose"]["finished"])
            wall = (end - start).total_seconds()
            walls.append(wall)
            for name, st in steps.items():
                took = (datetime.fromisoformat(st["finished"]) - datetime.fromisoformat(st["started"])).total_seconds()
                step_seconds.setdefault(name, []).append(took)
            ratios.append(wall / critical)
            rss.append(peak)
            # The same day again through `finrep run` (the whole binary, manifests loaded and
            # validated in the process): the peak the pipeline-only executable is compared with.
            whole, _, _ = run_measured([args.finrep, "run", "--config", str(config / "w1.yaml"), "--report", "w1",
                                        "--allow-private-networks", "--recompose", "--no-send",
                                        "--date", report_date(run)], env)
            whole_rss.append(json.loads(whole.strip().splitlines()[-1])["peakRssKib"] / 1024)
        record("W1-compose", {
            "workload": "W1 collect+extract+compose: 200 sources (150 feed, 30 json, 20 html) x 50 items on 20 loopback "
                        "addresses, 50-500 ms delays, 5% never answer (3 s timeout), 3% HTTP 500, 2% malformed, "
                        "30% of stories on 2-4 sources",
            "critical_path_seconds": round(critical, 3),
            "wall_seconds": summary(walls),
            "ratio_to_critical_path": summary(ratios),
            "peak_rss_mib": summary(rss),
            "peak_rss_mib_finrep_run": summary(whole_rss),
            "step_seconds_median": {k: round(statistics.median(v), 3) for k, v in step_seconds.items()},
            "last_outcome": {k: outcome[k] for k in ("articles", "sourcesOk", "sourcesFailed", "extract")},
        })
    finally:
        shutil.rmtree(config, ignore_errors=True)


# ---------------------------------------------------------------- W1 delivery

def smtp_server(port, log):
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "smtp" / "smtp_server.py"), "--port", str(port),
                             "--log", str(log), "--no-parse"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def send_config(dir_, feed_port, smtp_port, recipients, per_minute):
    docs = [{"apiVersion": "finrep.io/v1alpha1", "kind": "Source", "metadata": {"name": "news"},
             "spec": {"kind": "feed", "url": f"http://127.0.0.1:{feed_port}/feed.xml", "category": "宏观"}}]
    for r in range(recipients):
        docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "Recipient", "metadata": {"name": f"r{r:04d}"},
                     "spec": {"email": f"reader{r:04d}@example.com", "displayName": f"读者{r}",
                              "categories": [CATEGORIES[r % 4]] if r % 5 else []}})
    docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport", "metadata": {"name": "w1"},
                 "spec": {"title": "W1 基准日报", "content": {"lookbackHours": 24},
                          "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none", "from": "bench@example.com",
                                   "maxPerMinute": per_minute, "maxConnections": 2}}})
    (Path(dir_) / "w1.yaml").write_text("\n---\n".join(json.dumps(d, ensure_ascii=False) for d in docs))


def bench_w1_send(args):
    rng = random.Random(5)
    now = datetime.now(timezone.utc)
    titles = [story(rng, i) for i in range(60)]
    feed = encode(render("rss2", item_dicts(rng, titles, now, "send"), "send"), "utf-8")
    feed_dir = Path(tempfile.mkdtemp(prefix="finrep-send-feed-"))
    (feed_dir / "feed.xml").write_bytes(feed)
    feed_port = free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", str(feed_port), "--bind", "127.0.0.1",
                             "--directory", str(feed_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    env = dict(os.environ, DATABASE_URL=args.database_url, RUST_LOG="warn")
    # Each run is its own report day, so nothing was delivered for it yet.
    day_base = random.randint(1000, 30000)
    try:
        def one(recipients, per_minute, extra, run):
            work = Path(tempfile.mkdtemp(prefix="finrep-send-"))
            port = free_port()
            log = work / "messages.jsonl"
            smtp = smtp_server(port, log)
            try:
                send_config(work, feed_port, port, recipients, per_minute)
                date = report_date(day_base + run)
                out, _, _ = run_measured([args.finrep, "run", "--config", str(work), "--report", "w1",
                                          "--allow-private-networks", "--date", date] + extra, env)
                outcome = json.loads(out.strip().splitlines()[-1])
                send = [s for s in outcome["steps"] if s["step"] == "send"][0]
                seconds = (datetime.fromisoformat(send["finished"]) - datetime.fromisoformat(send["started"])).total_seconds()
                stamps = sorted(json.loads(l)["ts"] for l in log.read_text().splitlines())
                achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60 if len(stamps) > 1 else 0
                return {"sent": outcome["delivery"]["sent"], "seconds": seconds,
                        "per_second": outcome["delivery"]["sent"] / seconds, "per_minute_achieved": achieved,
                        "rss_mib": outcome["peakRssKib"] / 1024}
            finally:
                smtp.kill()
                shutil.rmtree(work, ignore_errors=True)

        pooled, single, throttled = [], [], []
        runs, recipients = sized(args.runs, 1), sized(2000, 20)
        throttled_recipients = sized(args.throttled_recipients, 5)
        for run in range(runs):
            pooled.append(one(recipients, 100000, [], run * 3))
            single.append(one(recipients, 100000, ["--no-connection-reuse"], run * 3 + 1))
        for run in range(max(1, runs // 2)):
            throttled.append(one(throttled_recipients, 600, [], 500 + run))
        rate = [r["per_second"] for r in pooled]
        rate_single = [r["per_second"] for r in single]
        achieved = [r["per_minute_achieved"] for r in throttled]
        record("W1-send", {
            "workload": "W1 delivery: 2000 recipients (4 category subscriptions, HTML + text, per-recipient "
                        "rendering) to an aiosmtpd server on loopback (not parsing messages), maxConnections 2 (the default)",
            "messages_per_second_pooled": summary(rate),
            "messages_per_second_one_connection_per_message": summary(rate_single),
            "pooled_vs_per_message": round(statistics.median(rate) / statistics.median(rate_single), 2),
            "throttled": {"max_per_minute": 600, "recipients": throttled_recipients,
                          "achieved_per_minute": summary(achieved),
                          "deviation_percent": round((statistics.median(achieved) / 600 - 1) * 100, 2)},
            "peak_rss_mib": summary([r["rss_mib"] for r in pooled + single + throttled]),
        })
    finally:
        http.kill()
        shutil.rmtree(feed_dir, ignore_errors=True)


# ---------------------------------------------------------------- W2 (plans)

def bench_w2_plan(args):
    scale = sized(1, 10)
    out = subprocess.run(args.finrep_bench + [str(sized(args.runs, 1)), str(scale)], check=True,
                         capture_output=True, text=True)
    runs = [json.loads(l) for l in out.stdout.strip().splitlines()]
    last = runs[-1]
    record("W2-plan", {
        "workload": "W2 plans: 50 DailyReports, 500 Sources, 5,000 Recipients in one namespace (each recipient "
                    "subscribed to 5 reports); plan::plan_for for every report, then gzip for its ConfigMap",
        "reports": last["reports"], "sources": last["sources"], "recipients": last["recipients"],
        "plan_ms_median": summary([r["plan_ms_median"] for r in runs]),
        "plan_ms_max": summary([r["plan_ms_max"] for r in runs]),
        "all_plans_with_gzip_seconds": summary([r["all_plans_with_gzip_seconds"] for r in runs]),
        "gzip_bytes_max": last["gzip_bytes_max"],
    })


def bench_w2_controller(args):
    scale = sized(1, 50)
    cmd = args.finrep_bench + ["--finrep", args.finrep, "--database-url", args.database_url,
                               "--runs", str(sized(args.runs, 1)), "--scale", str(scale),
                               "--annotation-bytes", str(sized(args.annotation_bytes, min(args.annotation_bytes, 1000))),
                               "--labels", str(args.labels), "--steady-seconds", str(sized(args.steady_seconds, 0))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    runs = [json.loads(l) for l in out.stdout.strip().splitlines()]
    last = runs[-1]
    keys = ["first_pass_ms_p50", "first_pass_ms_p99", "reconcile_ms_p50", "reconcile_ms_p99", "ready_seconds",
            "full_resync_seconds", "restart_resync_seconds", "rss_mib", "peak_rss_mib", "anon_rss_mib",
            "anon_rss_at_ready_mib"]
    if args.steady_seconds:
        keys.append("steady_rss_mib")
    bloated = (f"; 600 Recipients and 50 Sources with a {args.annotation_bytes}-byte annotation and "
               f"{args.labels} extra labels each" if args.annotation_bytes or args.labels else "")
    record("W2-controller", {
        "workload": "W2 controller: 50 DailyReports, 500 Sources, 5,000 Recipients in one namespace, served by the "
                    "in-memory Kubernetes API over loopback; reconcile_report in process, then `finrep-controller` "
                    "(release build, the controller alone) started twice against it" + bloated,
        "annotation_bytes": args.annotation_bytes, "labels": args.labels, "steady_seconds": args.steady_seconds,
        "reports": last["reports"], "sources": last["sources"], "recipients": last["recipients"],
        **{k: summary([r[k] for r in runs]) for k in keys},
    })


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_pss_mib(root):
    """Proportional set size of a process and all its descendants, with memory they share
    counted once across them: what a container holding that tree is charged, page cache
    aside."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    pids, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for child in [c for c, p in parents.items() if p == parent and c not in pids]:
            pids.add(child)
            frontier.append(child)
    total_kib = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


def cluster_pss_mib(data_dir):
    """Proportional set size of a PostgreSQL cluster: its postmaster and every child."""
    with open(Path(data_dir) / "postmaster.pid") as f:
        return tree_pss_mib(int(f.readline()))


class PssSampler:
    """Samples `measure()` (MiB) every 50 ms in a thread; `peak` is the highest seen."""

    def __init__(self, measure):
        self.measure, self.peak, self.stop = measure, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.measure())
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


# RUSTC_WRAPPER of the build benchmark: runs rustc and appends its crate's name and the
# peak resident memory of rustc (and the linker it ran) to $FINREP_RUSTC_PEAKS.
RUSTC_PEAK_WRAPPER = """import os, resource, subprocess, sys
rustc, args = sys.argv[1], sys.argv[2:]
# Inherited descriptors stay open: cargo's jobserver is passed to rustc through them.
code = subprocess.call([rustc, *args], close_fds=False)
if "--crate-name" in args:
    name = args[args.index("--crate-name") + 1]
    with open(os.environ["FINREP_RUSTC_PEAKS"], "a") as out:
        out.write(f"{name} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
sys.exit(code)
"""


def largest_compilations(peaks_file, count=5):
    """The crates whose compilation held the most memory (MiB, highest first)."""
    peaks = {}
    for line in peaks_file.read_text().splitlines() if peaks_file.exists() else []:
        name, kib = line.rsplit(" ", 1)
        peaks[name] = max(peaks.get(name, 0.0), int(kib) / 1024)
    return dict(sorted(((n, round(m, 1)) for n, m in peaks.items()), key=lambda p: -p[1])[:count])


class MemoryLimit:
    """A memory cgroup of its own, `limit_mib` with no swap (cgroup v2, or v1's memory
    controller): a build run in it has no more memory than a small host has free, and is
    killed, not swapped, past it. Needs root and a writable cgroup file system."""

    def __init__(self, limit_mib):
        self.limit_mib = limit_mib
        limit = str(limit_mib * 2**20)
        self.v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        root = Path("/sys/fs/cgroup") if self.v2 else Path("/sys/fs/cgroup/memory")
        self.dir = root / f"finrep-build-{os.getpid()}"
        self.dir.mkdir()
        files = ("memory.max", "memory.swap.max") if self.v2 else (
            "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        (self.dir / files[0]).write_text(limit)
        # Without swap accounting the file is missing and there is no swap to limit.
        if (self.dir / files[1]).exists():
            (self.dir / files[1]).write_text("0" if self.v2 else limit)

    def join(self):
        """The calling process joins the cgroup (a child's `preexec_fn`, before its exec)."""
        (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    def summary(self):
        """Peak usage (MiB, page cache included) and the number of processes the kernel killed."""
        if self.v2:
            peak_file = self.dir / "memory.peak"
            peak = int(peak_file.read_text()) if peak_file.exists() else 0
            events = (self.dir / "memory.events").read_text()
        else:
            peak = int((self.dir / "memory.max_usage_in_bytes").read_text())
            events = (self.dir / "memory.oom_control").read_text()
        kills = sum(int(line.split()[1]) for line in events.splitlines() if line.startswith("oom_kill "))
        return {"memory_limit_mib": self.limit_mib, "cgroup_peak_mib": round(peak / 2**20, 1), "oom_kills": kills}

    def close(self):
        self.dir.rmdir()


def bench_build(args):
    """A clean build of the two binaries in a profile, in a target directory of its own: wall
    time, the peak proportional set size of cargo and every rustc and linker under it (what a
    host's memory must hold at once), and the binaries' sizes. `--jobs` as cargo's."""
    # The smoke run builds (incrementally, nothing to do) where the tests already built.
    target = Path(args.target_dir) if SMOKE else ROOT / "target" / "build-bench" / args.profile
    if not SMOKE:
        shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    wrapper_dir = Path(tempfile.mkdtemp(prefix="finrep-rustc-peaks-"))
    peaks_file = wrapper_dir / "peaks"
    if not SMOKE:
        # Which compilation is the build's largest (a smoke run builds nothing to measure).
        wrapper = wrapper_dir / "rustc-peak"
        wrapper.write_text(f"#!{sys.executable}\n{RUSTC_PEAK_WRAPPER}")
        wrapper.chmod(0o755)
        env |= {"RUSTC_WRAPPER": str(wrapper), "FINREP_RUSTC_PEAKS": str(peaks_file)}
    cmd = ["cargo", "build", "--locked", "--profile", args.profile, "--bin", "finrep", "--bin", "finrep-controller"]
    if args.jobs:
        cmd += ["--jobs", str(args.jobs)]
    limit = MemoryLimit(args.memory_limit_mib) if args.memory_limit_mib and not SMOKE else None
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, preexec_fn=limit.join if limit else None)
        with PssSampler(lambda: tree_pss_mib(proc.pid)) as sampler:
            code = proc.wait()
        seconds = time.perf_counter() - started
        limited = limit.summary() if limit else {}
        peaks = largest_compilations(peaks_file)
    finally:
        # Neither the cgroup nor the wrapper outlives the build, whatever ends it.
        if limit:
            limit.close()
        shutil.rmtree(wrapper_dir, ignore_errors=True)
    if code != 0:
        sys.exit(f"cargo build --profile {args.profile} failed ({code}) {limited}")
    out_dir = target / ("debug" if args.profile == "dev" else args.profile)
    sizes = {b: round((out_dir / b).stat().st_size / 2**20, 1) for b in ("finrep", "finrep-controller")}
    # The code's speed in this profile: benchmark P's parse path, built the same way.
    built = subprocess.run(cmd[:3] + ["--profile", args.profile, "--bench", "parse", "--message-format=json"],
                           cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    parse_exe = [m["executable"] for m in map(json.loads, built.splitlines())
                 if m.get("reason") == "compiler-artifact" and m.get("executable")
                 and m.get("target", {}).get("name") == "parse"][-1]
    corpus = Path(tempfile.mkdtemp(prefix="finrep-corpus-"))
    try:
        generate_corpus(corpus)
        rates = []
        for _ in range(sized(3, 1)):
            total_items = total_seconds = 0.0
            for shape in sorted(d for d in corpus.iterdir() if d.is_dir()):
                run = finrep_parse_run([parse_exe], shape)
                total_items += run["items"]
                total_seconds += run["seconds"]
            rates.append(total_items / total_seconds)
    finally:
        shutil.rmtree(corpus, ignore_errors=True)
    record("build", {
        "workload": f"clean build of finrep and finrep-controller, profile {args.profile}, jobs {args.jobs or os.cpu_count()}",
        "profile": args.profile, "jobs": args.jobs or os.cpu_count(),
        "seconds": round(seconds, 1), "peak_pss_mib": round(sampler.peak, 1), "binary_mib": sizes,
        "largest_compilations_rss_mib": peaks, **limited,
        "parse_items_per_second": summary(rates),
    })
    if not (args.keep or SMOKE):
        shutil.rmtree(target, ignore_errors=True)


def bench_pg_memory(args):
    server = W1Server(args.port)
    server.start()
    config = Path(tempfile.mkdtemp(prefix="finrep-pg-"))
    dumps = Path(tempfile.mkdtemp(prefix="finrep-pg-dumps-"))
    try:
        (config / "w1.yaml").write_text(server.manifests(recipients=sized(2000, 20)))
        env = dict(os.environ, DATABASE_URL=args.database_url, FINREP_LOG_FORMAT="json", RUST_LOG="warn")
        # The migration Job's pod: `finrep migrate` alone (no child), so its own peak RSS.
        _, _, migrate_rss = run_measured([args.finrep, "migrate"], env)
        idle = cluster_pss_mib(args.data_dir)
        runs, backups, backup_pods = [], [], []
        for run in range(sized(args.runs, 1)):
            date = report_date(run)
            with PssSampler(lambda: cluster_pss_mib(args.data_dir)) as s:
                run_measured([args.finrep, "run", "--config", str(config), "--report", "w1",
                              "--allow-private-networks", "--recompose", "--no-send", "--date", date], env)
            runs.append(s.peak)
            # What the backup CronJob's pod runs: `finrep backup` and its pg_dump child.
            pod = []

            def watch(pid):
                pod.append(PssSampler(lambda: tree_pss_mib(pid)))
                return pod[0]

            with PssSampler(lambda: cluster_pss_mib(args.data_dir)) as s:
                run_measured([args.finrep, "backup", "--dir", str(dumps), "--name", "w1", "--date", date],
                             env, watch=watch)
            backups.append(s.peak)
            backup_pods.append(pod[0].peak)
        record("PG-memory", {
            "workload": "PostgreSQL with the chart's settings in a cluster of its own: W1 collect+extract+compose "
                        "(200 sources x 50 items, 2,000 recipients in the configuration), then `finrep backup`",
            "settings": args.settings,
            "idle_pss_mib": round(idle, 1),
            "peak_pss_during_run_mib": summary(runs),
            "peak_pss_during_backup_mib": summary(backups),
            "backup_process_tree_peak_pss_mib": summary(backup_pods),
            "migrate_peak_rss_mib": round(migrate_rss, 1),
        })
    finally:
        shutil.rmtree(config, ignore_errors=True)
        shutil.rmtree(dumps, ignore_errors=True)


# ---------------------------------------------------------------- W3

W3_FILL = """
INSERT INTO reports (namespace, report, report_date, time_zone, scheduled_for, manual, phase, title,
                     subject, html, text_body, article_count, recipient_count, plan, started_at, finished_at)
SELECT 'desk', 'brief-' || r, d::date, 'Asia/Shanghai', d::date + time '22:00' - interval '1 day', false,
       CASE WHEN (extract(doy FROM d)::int + r) % 29 = 0 THEN 'Failed'
            WHEN (extract(doy FROM d)::int + r) % 11 = 0 THEN 'PartiallyDelivered' ELSE 'Succeeded' END,
       '金融情报日报', '金融情报日报 · ' || d::date,
       '<html><body>' || repeat('<p>央行开展逆回购操作，市场流动性保持合理充裕。</p>', 200) || '</body></html>',
       repeat('央行开展逆回购操作，市场流动性保持合理充裕。\n', 200), 40, :recipients,
       '{"smtp": {"from": "brief@finrep.example"}}'::jsonb,
       d::date + time '22:00' - interval '1 day', d::date + time '22:15' - interval '1 day'
FROM generate_series(current_date - (:days - 1), current_date, interval '1 day') d, generate_series(1, 5) r;
INSERT INTO delivery_log (report_id, recipient, email, status, attempts, smtp_code, smtp_reply, sent_at, updated_at)
SELECT rep.id, 'reader-' || i, 'reader' || i || '@example.com',
       CASE WHEN i % 97 = 0 THEN 'failed' WHEN i % 53 = 0 THEN 'deferred' WHEN i % 211 = 0 THEN 'bounced' ELSE 'sent' END,
       1 + (i % 3), CASE WHEN i % 97 = 0 THEN 451 WHEN i % 211 = 0 THEN 550 ELSE 250 END,
       CASE WHEN i % 97 = 0 THEN '451 4.7.1 try again later' WHEN i % 211 = 0 THEN '550 5.1.1 no such user' ELSE '250 2.0.0 OK queued' END,
       rep.started_at + i * interval '1 second', rep.finished_at
FROM reports rep, generate_series(1, :recipients) i;
INSERT INTO step_timings (report_id, step, started_at, finished_at, ok)
SELECT rep.id, s, rep.started_at, rep.started_at + interval '3 seconds', rep.phase <> 'Failed' OR s <> 'send'
FROM reports rep, unnest(ARRAY['collect', 'extract', 'summarize', 'compose', 'send']) s;
INSERT INTO provider_calls (report_id, provider, model, purpose, outcome, latency_ms, called_at)
SELECT rep.id, 'deepseek', 'deepseek-chat', 'summary',
       CASE WHEN i % 17 = 0 THEN 'timeout' WHEN i % 5 = 0 THEN 'cached' ELSE 'ok' END, 300 + i * 37 % 900, rep.started_at
FROM reports rep, generate_series(1, 20) i;
INSERT INTO fetch_log (report_id, namespace, source, url, started_at, latency_ms, http_status, items, error_kind)
SELECT rep.id, 'desk', 'source-' || i, 'https://news.example.com/' || i || '.xml', rep.started_at, 50 + i * 13 % 400,
       CASE WHEN i % 23 = 0 THEN 503 ELSE 200 END, 20, CASE WHEN i % 23 = 0 THEN 'http' END
FROM reports rep, generate_series(1, 20) i;
INSERT INTO source_state (namespace, source, url, last_fetch_at, last_success_at, consecutive_failures, last_error)
SELECT 'desk', 'source-' || i, 'https://news.example.com/' || i || '.xml', now(), now() - interval '1 hour',
       CASE WHEN i % 23 = 0 THEN 3 ELSE 0 END, CASE WHEN i % 23 = 0 THEN 'HTTP 503' END
FROM generate_series(1, 100) i;
INSERT INTO blacklist (namespace, email, reason, via)
SELECT 'desk', 'reader' || i || '@example.com', 'unsubscribe', 'one-click' FROM generate_series(7, :recipients, 50) i;
INSERT INTO report_schedule (namespace, report, next_slot)
SELECT 'desk', 'brief-' || r, current_date + time '22:00' FROM generate_series(1, 5) r;
INSERT INTO backups (name, file, bytes, ok, started_at) VALUES ('database', '/backups/finrep_database.sql.gz', 123456, true, now());
"""

# The console's heaviest queries as src/core/store/console.rs issues them, for the plans quoted in
# docs/benchmarks.md.
W3_EXPLAIN = {
    "archive page": "SELECT id, namespace, report, report_date, phase, manual, subject, article_count, started_at, "
                    "finished_at FROM reports ORDER BY report_date DESC, namespace, report LIMIT 31 OFFSET 300",
    "archive page deliveries": "SELECT report_id, status, count(*) AS n FROM delivery_log "
                               "WHERE report_id = ANY(ARRAY(SELECT id FROM reports ORDER BY report_date DESC LIMIT 30)) "
                               "GROUP BY report_id, status",
    "delivery log, failed only": "SELECT recipient, email, status, attempts, smtp_code, smtp_reply, last_error, sent_at, "
                                 "updated_at, count(*) OVER () AS total FROM delivery_log "
                                 "WHERE report_id = (SELECT max(id) / 2 FROM reports) AND status = 'failed' "
                                 "ORDER BY COALESCE(array_position('{failed,bounced,uncertain,deferred,pending,sending}'::text[], status), 99), "
                                 "regexp_replace(lower(email), '[0-9]+', '', 'g'), "
                                 "substring(email from '[0-9]{1,18}')::bigint NULLS FIRST, email LIMIT 31 OFFSET 0",
    "delivery search page, 7 days": "SELECT r.id, r.report_date, d.email, d.status FROM reports r "
                                    "JOIN delivery_log d ON d.report_id = r.id "
                                    "WHERE r.report_date BETWEEN current_date - 6 AND current_date "
                                    "ORDER BY r.report_date DESC, r.namespace, r.report, "
                                    "COALESCE(array_position('{failed,bounced,uncertain,deferred,pending}'::text[], d.status), 99), "
                                    "regexp_replace(lower(d.email), '[0-9]+', '', 'g'), "
                                    "substring(d.email from '[0-9]{1,18}')::bigint NULLS FIRST, d.email LIMIT 31",
    "delivery search count, 31 days, address": "SELECT count(*) FROM reports r JOIN delivery_log d ON d.report_id = r.id "
                                               "WHERE r.report_date BETWEEN current_date - 30 AND current_date "
                                               "AND d.email ILIKE '%reader97@%'",
    "dashboard run versions, 90 days": "SELECT r.id, r.report_date, v.version, v.version < now() - make_interval(secs => 300) "
                                       "AS settled FROM reports r CROSS JOIN LATERAL (SELECT max(d.updated_at) AS version "
                                       "FROM delivery_log d WHERE d.report_id = r.id) v WHERE r.report_date >= current_date - 89",
    "latest run of each report (index walk)": "WITH RECURSIVE names AS ((SELECT namespace, report FROM reports "
                                              "ORDER BY namespace, report LIMIT 1) UNION ALL SELECT n.namespace, n.report "
                                              "FROM names k CROSS JOIN LATERAL (SELECT namespace, report FROM reports "
                                              "WHERE (namespace, report) > (k.namespace, k.report) ORDER BY namespace, report "
                                              "LIMIT 1) n) SELECT l.* FROM names k CROSS JOIN LATERAL (SELECT id, report_date "
                                              "FROM reports WHERE namespace = k.namespace AND report = k.report "
                                              "ORDER BY report_date DESC LIMIT 1) l",
    "dashboard steps, 7 days": "SELECT s.step, count(*) AS total, count(*) FILTER (WHERE NOT s.ok OR (s.step = 'send' "
                               "AND r.phase = ANY('{PartiallyDelivered,Failed}'))) AS failed FROM step_timings s "
                               "JOIN reports r ON r.id = s.report_id WHERE r.report_date >= current_date - 7 "
                               "GROUP BY s.step ORDER BY s.step",
    "dashboard summariser calls, 7 days": "SELECT provider, count(*) FROM provider_calls WHERE report_id = ANY(ARRAY"
                                          "(SELECT id FROM reports WHERE report_date >= current_date - 7)) "
                                          "GROUP BY provider",
}


def http_login(base, password):
    """The session cookie of a login, as a browser would get it."""
    import http.cookiejar
    import re as _re
    import urllib.parse
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    page = opener.open(base + "/login").read().decode()
    csrf = _re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    login_cookie = next(c for c in jar if c.name == "finrep_login_csrf")
    body = urllib.parse.urlencode({"user": "admin", "password": password, "csrf": csrf}).encode()
    req = urllib.request.Request(base + "/login", data=body, headers={"Cookie": f"finrep_login_csrf={login_cookie.value}"})
    try:
        opener.open(req)
    except urllib.error.HTTPError as e:
        if e.code != 303:
            raise
        for header in e.headers.get_all("Set-Cookie"):
            if header.startswith("finrep_session="):
                return header.split(";", 1)[0]
    raise SystemExit("login failed")


def wrk(url, cookie, seconds, connections):
    """Requests/s and latency percentiles (ms) of `wrk --latency` against one page."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Cookie: {cookie}", url],
                         capture_output=True, text=True, check=True).stdout
    def ms(text):
        value, unit = float(text[:-2] if text.endswith(("ms", "us")) else text[:-1]), text[-2:] if text.endswith(("ms", "us")) else text[-1:]
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    result = {"requests_per_s": float(out.split("Requests/sec:")[1].split()[0])}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "90%", "99%"):
            result["p" + parts[0][:-1] + "_ms"] = round(ms(parts[1]), 2)
    non2xx = [l for l in out.splitlines() if "Non-2xx" in l]
    if non2xx:
        raise SystemExit(f"{url}: {non2xx[0]}")
    return result


def bench_w3(args):
    days, recipients = sized(365, 3), sized(500, 5)
    seconds, connections = sized(args.seconds, 1), sized(args.connections, 2)
    env = dict(os.environ, DATABASE_URL=args.database_url, FINREP_LOG_FORMAT="json", RUST_LOG="warn")
    run_measured([args.finrep, "migrate"], env)
    started = time.perf_counter()
    subprocess.run(["psql", args.database_url, "-q", "-v", "ON_ERROR_STOP=1", "-v", f"days={days}",
                    "-v", f"recipients={recipients}"], input=W3_FILL, text=True, check=True)
    # A year-old table has been vacuumed by autovacuum many times over: its visibility map is
    # set, so counts are index-only scans. VACUUM cannot run inside the fill's transaction.
    subprocess.run(["psql", args.database_url, "-q", "-c", "VACUUM ANALYZE"], check=True)
    fill_s = time.perf_counter() - started
    password = "w3 benchmark password"
    hashed = subprocess.run([args.finrep, "web", "hash-password"], input=password + "\n", capture_output=True,
                            text=True, check=True).stdout.strip()
    port = free_port()
    base = f"http://localhost:{port}"
    web = subprocess.Popen([args.finrep, "web", "--listen", f"127.0.0.1:{port}"],
                           env=dict(env, FINREP_WEB_PASSWORD_HASH=hashed), stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                import urllib.request
                if urllib.request.urlopen(base + "/readyz").status == 200:
                    break
            time.sleep(0.1)
        cookie = http_login(base, password)
        mid = subprocess.run(["psql", args.database_url, "-Atc", "SELECT max(id) / 2 FROM reports"],
                             capture_output=True, text=True, check=True).stdout.strip()
        pages = {
            "dashboard": "/console",
            "archive (page 11)": "/console/reports?page=11",
            "report": f"/console/reports/{mid}",
            "delivery log (failed)": f"/console/reports/{mid}/deliveries?status=failed",
            "delivery log (page 5)": f"/console/reports/{mid}/deliveries?page=5",
            "delivery search (7 days)": "/console/deliveries",
            "delivery search (31 days, address)": "/console/deliveries?q=reader97%40&from="
                                                  + (datetime.now().date() - timedelta(days=30)).isoformat(),
            "recipients": "/console/recipients?page=3",
            "sources": "/console/sources",
        }
        idle_rss = rss_kib(web.pid, "VmRSS")
        with PssSampler(lambda: rss_kib(web.pid, "VmRSS") / 1024) as sampled:
            load = {name: wrk(base + path, cookie, seconds, connections)
                    for name, path in pages.items()}
        # The high-water mark also holds the login's password hash (argon2's memory cost).
        peak_rss = rss_kib(web.pid, "VmHWM")
    finally:
        web.terminate()
        web.wait(timeout=10)
    plans = {}
    for name, sql in W3_EXPLAIN.items():
        plans[name] = subprocess.run(["psql", args.database_url, "-Atc", "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql],
                                     capture_output=True, text=True, check=True).stdout.strip().splitlines()
    counts = subprocess.run(["psql", args.database_url, "-Atc",
                             "SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM delivery_log)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    record("W3", {
        "workload": f"{days} days x 5 reports x {recipients} recipients of history; wrk -t2 -c{connections} "
                    f"-d{seconds}s per page on loopback, finrep web (release) and PostgreSQL on the same 2 cores",
        "rows": dict(zip(["reports", "deliveries"], map(int, counts.split("|")))),
        "fill_seconds": round(fill_s, 1),
        "pages": load,
        "web_rss_idle_mib": round(idle_rss / 1024, 1),
        "web_rss_peak_under_load_mib": round(sampled.peak, 1),
        "web_rss_high_water_with_login_mib": round(peak_rss / 1024, 1),
        "plans": plans,
    })


# ---------------------------------------------------------------- A: the web under abuse

async def login_flood(base_port, attempts, concurrency):
    """`attempts` login POSTs with random user names (one client), `concurrency` at a time;
    returns the answers by status."""
    statuses = {}
    queue = asyncio.Queue()
    for i in range(attempts):
        queue.put_nowait(i)

    async def worker():
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = f"user=u{i}x{random.getrandbits(32)}&password=wrong&csrf=t".encode()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", base_port)
                writer.write(b"POST /login HTTP/1.1\r\nHost: x\r\nCookie: finrep_login_csrf=t\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 10)
                status = line.split()[1].decode() if len(line.split()) > 1 else "none"
                writer.close()
            except (OSError, asyncio.TimeoutError):
                status = "error"
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def half_open(port, count, hold_s):
    """`count` connections that send half a request; how many the server has closed after
    `hold_s` seconds."""
    conns = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            conns.append((reader, writer))
    await asyncio.sleep(hold_s)
    closed = 0
    for reader, writer in conns:
        try:
            data = await asyncio.wait_for(reader.read(1024), 0.05)
            closed += data == b"" or b"408" in data
        except ConnectionError:
            # Closed with our half request unread: the kernel answers with a reset.
            closed += 1
        except (OSError, asyncio.TimeoutError):
            pass
        writer.close()
    return len(conns), closed


def bench_abuse(args):
    """The console's web process under a login flood of random names and under half-open
    connections: resident memory before, during and after, read from /proc."""
    import urllib.request
    attempts, half, hold = sized(200_000, 300), sized(3_000, 50), sized(15, 12)
    env = dict(os.environ, DATABASE_URL=args.database_url, FINREP_LOG_FORMAT="json", RUST_LOG="warn")
    run_measured([args.finrep, "migrate"], env)
    hashed = subprocess.run([args.finrep, "web", "hash-password"], input="abuse benchmark password\n",
                            capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="finrep-web-abuse-", suffix=".log")
    web = subprocess.Popen([args.finrep, "web", "--listen", f"127.0.0.1:{port}"],
                           env=dict(env, FINREP_WEB_PASSWORD_HASH=hashed, RUST_LOG="info"),
                           stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz").status == 200:
                    break
            time.sleep(0.1)
        idle = rss_kib(web.pid, "VmRSS")
        started = time.perf_counter()
        statuses = asyncio.run(login_flood(port, attempts, 32))
        flood_s = time.perf_counter() - started
        after_flood = rss_kib(web.pid, "VmRSS")
        opened, closed = asyncio.run(half_open(port, half, hold))
        after_half_open = rss_kib(web.pid, "VmRSS")
        peak = rss_kib(web.pid, "VmHWM")
        healthy = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200
    finally:
        web.terminate()
        web.wait(timeout=10)
    log_bytes = os.path.getsize(log.name)
    if not healthy or closed < opened:
        raise SystemExit(f"the web did not hold: healthy={healthy}, {closed} of {opened} half-open closed")
    record("A", {
        "workload": f"{attempts} login POSTs with random user names from one client (32 at a time), then "
                    f"{half} connections sending half a request held {hold} s; finrep web and PostgreSQL "
                    "on the same 2 cores, loopback",
        "login_answers": statuses,
        "flood_seconds": round(flood_s, 1),
        "rss_idle_mib": round(idle / 1024, 1),
        "rss_after_flood_mib": round(after_flood / 1024, 1),
        "rss_after_half_open_mib": round(after_half_open / 1024, 1),
        "rss_high_water_mib": round(peak / 1024, 1),
        "half_open_opened": opened,
        "half_open_closed_by_server": closed,
        "log_bytes": log_bytes,
    })


# ---------------------------------------------------------------- W4 (many reports at one slot)

class BotServer:
    """A WeCom-style group bot endpoint on loopback: records each post's key and time,
    answers errcode 0."""

    def __init__(self):
        import http.server
        self.posts, lock = [], threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    outer.posts.append((self.path.rsplit("key=", 1)[-1], time.time()))
                body = b'{"errcode":0,"errmsg":"ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def w4_config(dir_, feed_port, relay_port, namespaces, per_ns, readers, groups, per_minute):
    """`namespaces` × `per_ns` reports at 06:00 Shanghai, `readers` e-mail recipients each and
    `groups` WeCom groups spread over them, mailing through the relay on `relay_port`."""
    docs, reports = [], []
    for n in range(namespaces):
        ns = f"desk-{n}"
        docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "Source",
                     "metadata": {"name": "news", "namespace": ns},
                     "spec": {"kind": "feed", "url": f"http://127.0.0.1:{feed_port}/feed.xml", "category": "宏观"}})
        for r in range(per_ns):
            name = f"brief-{r}"
            reports.append((ns, name))
            docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport",
                         "metadata": {"name": name, "namespace": ns},
                         "spec": {"title": f"W4 日报 {ns}/{name}", "content": {"lookbackHours": 24},
                                  "recipientSelector": {"matchLabels": {"w4/report": name}},
                                  "smtp": {"host": "127.0.0.1", "port": relay_port, "tls": "none",
                                           "from": f"{ns} <{name}@w4.example>", "maxPerMinute": per_minute,
                                           "maxConnections": 2}}})
            for i in range(readers):
                docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
                             "metadata": {"name": f"{name}-r{i:03d}", "namespace": ns,
                                          "labels": {"w4/report": name}},
                             "spec": {"email": f"{ns}.{name}.{i:03d}@example.com"}})
    env = {}
    for g in range(groups):
        ns, name = reports[g % len(reports)]
        docs.append({"apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
                     "metadata": {"name": f"group-{g:02d}", "namespace": ns, "labels": {"w4/report": name}},
                     "spec": {"chat": {"platform": "wecom",
                                       "webhookSecretRef": {"name": f"bot-{g:02d}", "key": "webhook"}}}})
        env[f"FINREP_SECRET_BOT_{g:02d}_WEBHOOK"] = f"g{g:02d}"
    (Path(dir_) / "w4.yaml").write_text("\n---\n".join(json.dumps(d, ensure_ascii=False) for d in docs))
    return reports, env


def bench_w4(args):
    """W4: twenty reports due at 06:00 in four namespaces, 2,000 e-mail recipients and 30
    chat groups in all, standalone mode through one relay that passes 20 messages a second:
    each report's delivery time against its window, and the memory of finrep's processes and
    PostgreSQL together."""
    namespaces, per_ns = 4, sized(5, 2)
    readers, groups = sized(100, 5), sized(30, 4)
    relay_rate = 1200
    rng = random.Random(9)
    now = datetime.now(timezone.utc)
    feed_dir = Path(tempfile.mkdtemp(prefix="finrep-w4-feed-"))
    titles = [story(rng, i) for i in range(40)]
    (feed_dir / "feed.xml").write_bytes(encode(render("rss2", item_dicts(rng, titles, now, "w4"), "w4"), "utf-8"))
    feed_port = free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", str(feed_port), "--bind", "127.0.0.1",
                             "--directory", str(feed_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        # Out of the box, then with each report's maxPerMinute raised toward the relay's rate
        # (the relay paces every run together, so the reports need not pace themselves low).
        for label, concurrent, per_minute in [("defaults", None, None), ("per_minute_600", None, 600)]:
            results.append(w4_round(args, label, concurrent, per_minute, feed_port,
                                    (namespaces, per_ns, readers, groups, relay_rate)))
    finally:
        http.kill()
        shutil.rmtree(feed_dir, ignore_errors=True)
    if not SMOKE:
        w4_plot(results, ROOT / "docs" / "w4.svg")
    record("W4", {
        "workload": f"{namespaces * per_ns} DailyReports in {namespaces} namespaces due at 06:00 Shanghai "
                    f"(window 06:05-06:20), {namespaces * per_ns * readers} e-mail recipients and {groups} WeCom "
                    f"groups in all; standalone mode through `finrep relay` passing {relay_rate // 60} messages "
                    "a second to an aiosmtpd server; PostgreSQL on the same host",
        "rounds": results,
    })


def w4_plot(rounds, path):
    """Each report's last delivery against the 15-minute window, one row per report and a bar
    per round: an SVG for docs/benchmarks.md."""
    reports = sorted({r for rd in rounds for r in rd["per_report_last_delivery_s"]})
    colours = ["#c0392b", "#2e86c1", "#27ae60"]
    row, left, width = 26, 150, 600
    height = 60 + row * len(reports)
    scale = width / 900
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 40}" height="{height + 40}" '
           'font-family="sans-serif" font-size="12" role="img" aria-labelledby="t d">',
           '<title id="t">W4: each report\'s last delivery after the window opened</title>',
           '<desc id="d">' + escape("; ".join(
               f"{rd['round']}: last report done {rd['last_report_done_s']} s after the window opened"
               for rd in rounds)) + ' (window: 900 s)</desc>',
           f'<rect x="{left}" y="30" width="{width}" height="{height - 40}" fill="#f4f6f6"/>']
    for s in range(0, 901, 150):
        x = left + s * scale
        out.append(f'<line x1="{x}" y1="30" x2="{x}" y2="{height - 10}" stroke="#ccc"/>'
                   f'<text x="{x}" y="{height + 5}" text-anchor="middle">{s} s</text>')
    for i, rd in enumerate(rounds):
        out.append(f'<rect x="{left + i * 200}" y="8" width="12" height="12" fill="{colours[i % 3]}"/>'
                   f'<text x="{left + i * 200 + 16}" y="18">{escape(rd["round"])}</text>')
    for j, name in enumerate(reports):
        y = 36 + j * row
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(name)}</text>')
        for i, rd in enumerate(rounds):
            s = rd["per_report_last_delivery_s"].get(name)
            if s is not None:
                out.append(f'<rect x="{left}" y="{y + i * 9}" width="{max(1, s * scale):.1f}" height="8" '
                           f'fill="{colours[i % 3]}"/>')
    out.append(f'<text x="{left + width}" y="{height + 25}" text-anchor="end">'
               'seconds after 06:05 (the window ends at 900 s)</text></svg>')
    path.write_text("\n".join(out) + "\n")


def w4_round(args, label, concurrent, per_minute, feed_port, sizes):
    namespaces, per_ns, readers, groups, relay_rate = sizes
    work = Path(tempfile.mkdtemp(prefix=f"finrep-w4-{label}-"))
    db = f"finrep_w4_{label}"
    admin = args.database_url.rsplit("/", 1)[0]
    subprocess.run(["psql", f"{admin}/postgres", "-qc", f"drop database if exists {db}", "-c",
                    f"create database {db}"], check=True, capture_output=True)
    url = f"{admin}/{db}"
    upstream_port, relay_port, admin_port = free_port(), free_port(), free_port()
    upstream = smtp_server(upstream_port, work / "messages.jsonl")
    bots = BotServer()
    reports, secrets = w4_config(work, feed_port, relay_port, namespaces, per_ns, readers, groups,
                                 per_minute or 120)
    secrets = {k: f"http://127.0.0.1:{bots.port}/cgi-bin/webhook/send?key={v}" for k, v in secrets.items()}
    day = report_date(random.randint(1000, 30000))
    clock = work / "now"
    clock.write_text(f"{day}T05:59:58+08:00 x1\n")
    env = dict(os.environ, DATABASE_URL=url, RUST_LOG="warn", FINREP_CLOCK_FILE=str(clock), **secrets)
    relay = subprocess.Popen([args.finrep, "relay", "--smtp-listen", f"127.0.0.1:{relay_port}",
                              "--http-listen", f"127.0.0.1:{free_port()}", "--smtp-host", "127.0.0.1",
                              "--smtp-port", str(upstream_port), "--smtp-tls", "none",
                              "--smtp-max-per-minute", str(relay_rate)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cmd = [args.finrep, "standalone", "--config", str(work), "--admin-listen", f"127.0.0.1:{admin_port}",
           "--no-backup", "--poll-seconds", "0.5", "--trusted-host", f"127.0.0.1:{relay_port}",
           "--trusted-host", f"127.0.0.1:{feed_port}",
           "--trusted-webhook-host", f"http://127.0.0.1:{bots.port}"]
    if concurrent:
        cmd += ["--max-concurrent-runs", str(concurrent)]
    pg_dir = subprocess.run(["psql", url, "-Atc", "show data_directory"], capture_output=True, text=True).stdout.strip()
    finrep_log = open(work / "standalone.log", "w")
    standalone = subprocess.Popen(cmd, env=env, stdout=finrep_log, stderr=subprocess.STDOUT)
    finrep_pss = lambda: tree_pss_mib(standalone.pid) + tree_pss_mib(relay.pid)
    pg_pss = lambda: cluster_pss_mib(pg_dir) if os.path.exists(Path(pg_dir) / "postmaster.pid") else 0
    try:
        with PssSampler(finrep_pss) as sampler, PssSampler(pg_pss) as pg_sampler:
            time.sleep(8)  # every run composed and waiting, or queued behind the bound
            opened = time.time()
            clock.write_text(f"{day}T06:05:00+08:00 x1\n")
            deadline = opened + 15 * 60 + 30
            while time.time() < deadline:
                done = subprocess.run(["psql", url, "-Atc", "select count(*) from reports where finished_at is not null "
                                       "and phase in ('Succeeded','PartiallyDelivered','Failed')"],
                                      capture_output=True, text=True).stdout.strip()
                if done == str(len(reports)):
                    break
                time.sleep(1)
        rows = subprocess.run(["psql", url, "-AtF", " ", "-c",
                               "select r.namespace || '/' || r.report, r.phase, "
                               "extract(epoch from max(d.sent_at) - ((r.report_date + time '06:05') at time zone 'Asia/Shanghai')), "
                               "count(*) filter (where d.status = 'sent') from reports r join delivery_log d on d.report_id = r.id "
                               "group by r.id order by 3"], capture_output=True, text=True).stdout.split("\n")
        per_report = [dict(zip(["report", "phase", "last_delivery_s", "sent"], r.split())) for r in rows if r]
        messages = [json.loads(l) for l in (work / "messages.jsonl").read_text().splitlines()]
        last = [float(r["last_delivery_s"]) for r in per_report]
        return {
            "round": label,
            "max_concurrent_runs": concurrent or "default",
            "max_per_minute_per_report": per_minute or 120,
            "reports_finished": len(per_report),
            "emails_accepted": len(messages),
            "distinct_addresses": len({a for m in messages for a in m["rcpt"]}),
            "chat_posts": len(bots.posts),
            "first_report_done_s": round(min(last), 1) if last else None,
            "last_report_done_s": round(max(last), 1) if last else None,
            "window_s": 900,
            "every_report_inside_its_window": bool(last) and max(last) <= 900 and len(per_report) == len(reports),
            "per_report_last_delivery_s": {r["report"]: round(float(r["last_delivery_s"]), 1) for r in per_report},
            "peak_pss_mib_standalone_and_relay": round(sampler.peak, 1),
            "peak_pss_mib_postgres_cluster": round(pg_sampler.peak, 1),
        }
    finally:
        standalone.terminate()
        relay.terminate()
        for p in (standalone, relay):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
        upstream.kill()
        bots.close()
        finrep_log.close()
        shutil.rmtree(work, ignore_errors=True)


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one run, nothing recorded")
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("parse")
    pp.add_argument("--finrep-bench", nargs="+", required=True)
    pp.add_argument("--runs", type=int, default=5)
    pw = sub.add_parser("w1")
    pw.add_argument("--finrep", required=True)
    pw.add_argument("--database-url", required=True)
    pw.add_argument("--runs", type=int, default=5)
    pw.add_argument("--port", type=int, default=18650)
    p2 = sub.add_parser("w2-plan")
    p2.add_argument("--finrep-bench", nargs="+", required=True)
    p2.add_argument("--runs", type=int, default=5)
    pc = sub.add_parser("w2-controller")
    pc.add_argument("--finrep-bench", nargs="+", required=True)
    pc.add_argument("--finrep", required=True)
    pc.add_argument("--database-url", required=True)
    pc.add_argument("--runs", type=int, default=3)
    pc.add_argument("--annotation-bytes", type=int, default=0)
    pc.add_argument("--labels", type=int, default=0)
    pc.add_argument("--steady-seconds", type=int, default=0)
    ps = sub.add_parser("w1-send")
    ps.add_argument("--finrep", required=True)
    ps.add_argument("--database-url", required=True)
    ps.add_argument("--runs", type=int, default=5)
    ps.add_argument("--throttled-recipients", type=int, default=300)
    pg = sub.add_parser("pg-memory")
    pg.add_argument("--finrep", required=True)
    pg.add_argument("--database-url", required=True)
    pg.add_argument("--data-dir", required=True)
    pg.add_argument("--settings", default="")
    pg.add_argument("--runs", type=int, default=3)
    pg.add_argument("--port", type=int, default=18651)
    pb = sub.add_parser("build")
    pb.add_argument("--profile", default="release")
    pb.add_argument("--jobs", type=int, default=0)
    pb.add_argument("--keep", action="store_true", help="keep the target directory")
    pb.add_argument("--memory-limit-mib", type=int, default=0,
                    help="build in a memory cgroup of this size without swap (root)")
    pb.add_argument("--target-dir", default=str(ROOT / "target"), help="with --smoke: where to build")
    pr = sub.add_parser("record", help="append the JSON object on stdin to docs/bench-results/NAME.json")
    pr.add_argument("name")
    p4 = sub.add_parser("w4")
    p4.add_argument("--finrep", required=True)
    p4.add_argument("--database-url", required=True)
    pa = sub.add_parser("abuse")
    pa.add_argument("--finrep", required=True)
    pa.add_argument("--database-url", required=True)
    p3 = sub.add_parser("w3")
    p3.add_argument("--finrep", required=True)
    p3.add_argument("--database-url", required=True)
    p3.add_argument("--seconds", type=int, default=10)
    p3.add_argument("--connections", type=int, default=8)
    args = p.parse_args()
    global SMOKE
    SMOKE = args.smoke
    {"parse": bench_parse, "w1": bench_w1, "w1-send": bench_w1_send, "w2-plan": bench_w2_plan,
     "w2-controller": bench_w2_controller, "build": bench_build, "pg-memory": bench_pg_memory, "w3": bench_w3,
     "abuse": bench_abuse, "w4": bench_w4,
     "record": lambda a: record(a.name, json.loads(sys.stdin.read()))}[args.cmd](args)


if __name__ == "__main__":
    main()
