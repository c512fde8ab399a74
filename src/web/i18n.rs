//! The console's two languages: Chinese by default, English by `Accept-Language` or the
//! switch (`?lang=en`, remembered in a cookie).

use std::collections::BTreeMap;

use axum::http::HeaderMap;

/// A language the pages are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Lang {
    Zh,
    En,
}

/// The cookie the switch sets.
pub const LANG_COOKIE: &str = "finrep_lang";

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Self::Zh => "zh-CN",
            Self::En => "en",
        }
    }

    fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag.starts_with("zh") {
            Some(Self::Zh)
        } else if tag.starts_with("en") {
            Some(Self::En)
        } else {
            None
        }
    }

    /// The language of a request: the switch, then its cookie, then the first language of
    /// `Accept-Language` the console has (by q-value), then Chinese.
    pub fn of_request(query: Option<&str>, headers: &HeaderMap) -> Self {
        if let Some(lang) = query.and_then(Self::parse) {
            return lang;
        }
        if let Some(lang) = super::auth::cookie(headers, LANG_COOKIE).and_then(Self::parse) {
            return lang;
        }
        let accept = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut offered: Vec<(f32, Self)> = accept
            .split(',')
            .filter_map(|part| {
                let mut it = part.split(';');
                let lang = Self::parse(it.next()?)?;
                let q = it
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q > 0.0).then_some((q, lang))
            })
            .collect();
        // Stable: among equal q-values the first listed wins.
        offered.sort_by(|a, b| b.0.total_cmp(&a.0));
        offered.first().map_or(Self::Zh, |(_, lang)| *lang)
    }

    /// Every text of the pages in this language.
    pub fn texts(self) -> BTreeMap<&'static str, &'static str> {
        TEXTS
            .iter()
            .map(|(key, zh, en)| {
                (
                    *key,
                    match self {
                        Self::Zh => *zh,
                        Self::En => *en,
                    },
                )
            })
            .collect()
    }
}

/// Key, Chinese, English.
const TEXTS: &[(&str, &str, &str)] = &[
    ("app", "金融情报日报", "Financial intelligence daily"),
    ("console", "控制台", "Console"),
    ("dashboard", "概览", "Dashboard"),
    ("reports", "报告归档", "Reports"),
    ("recipients", "收件人", "Recipients"),
    ("deliveries_nav", "投递", "Deliveries"),
    (
        "delivery_search",
        "投递记录（全部日报）",
        "Delivery log (all reports)",
    ),
    ("all_reports", "全部日报", "All reports"),
    ("from_date", "起始日期", "From"),
    ("to_date", "截止日期", "To"),
    (
        "address_hint",
        "地址或群名的一部分",
        "Part of an address or a group",
    ),
    (
        "period_rule",
        "按日报日期查询，一次最多 {max} 天；未选日期时为近 7 天。",
        "By report date, at most {max} days at once; the last 7 days unless chosen.",
    ),
    (
        "period_adjusted",
        "所选时段已调整为 {from} 至 {to}。",
        "The period was adjusted to {from} – {to}.",
    ),
    (
        "deliveries_of_address",
        "此地址近 7 天的投递",
        "This address's deliveries of the last 7 days",
    ),
    ("sources", "信息源", "Sources"),
    ("logout", "退出登录", "Log out"),
    ("login", "登录", "Log in"),
    ("user", "用户名", "User"),
    ("password", "密码", "Password"),
    (
        "login_failed",
        "用户名或密码错误。",
        "Wrong user or password.",
    ),
    (
        "console_off",
        "控制台未启用：请在 Secret 中设置密码哈希（finrep web hash-password）。",
        "The console is off: set a password hash in its Secret (finrep web hash-password).",
    ),
    (
        "last_24h",
        "今天和昨天的日报",
        "Today's and yesterday's reports",
    ),
    ("last_7d", "最近 8 天的日报", "The last 8 days' reports"),
    (
        "counting_rule",
        "统计口径：以下数字都按日报日期计算——运行、步骤、摘要调用和投递，都属于这些日期的日报运行；发送步骤在该次运行未全部送达时计为失败。",
        "How these are counted: every figure below is of the runs of these report dates — runs, steps, summariser calls and deliveries alike; a send step counts as failed when its run did not deliver everything.",
    ),
    (
        "runs_by_phase",
        "各报告运行（按阶段）",
        "Runs per report, by phase",
    ),
    ("report", "报告", "Report"),
    ("namespace", "命名空间", "Namespace"),
    ("phase", "阶段", "Phase"),
    ("runs", "次数", "Runs"),
    ("step_failures", "步骤失败率", "Step failure rate"),
    ("step", "步骤", "Step"),
    ("total", "总数", "Total"),
    ("failed", "失败", "Failed"),
    ("rate", "比例", "Rate"),
    ("providers", "摘要服务调用", "Summariser calls"),
    ("provider", "服务", "Provider"),
    ("calls", "调用", "Calls"),
    ("timeouts", "超时", "Timeouts"),
    ("errors", "错误", "Errors"),
    ("cached", "缓存命中", "Cached"),
    ("p95", "95 分位延迟", "p95 latency"),
    ("deliveries", "投递", "Deliveries"),
    ("status", "状态", "Status"),
    ("count", "数量", "Count"),
    ("failing_sources", "当前失败的信息源", "Sources failing now"),
    ("failures", "连续失败", "Failures in a row"),
    ("last_success", "上次成功", "Last success"),
    ("next_slots", "下次运行", "Next slots"),
    ("next_slot", "下次运行时间", "Next slot"),
    ("as_of", "记录于", "As of"),
    ("last_backup", "最近备份", "Last backup"),
    ("none", "无", "None"),
    ("ok", "正常", "OK"),
    ("date", "日期", "Date"),
    ("subject", "主题", "Subject"),
    ("articles", "条目", "Articles"),
    ("sent", "已发送", "Sent"),
    ("pending", "待发送", "Pending"),
    ("sending", "发送中", "Sending"),
    ("deferred", "已推迟", "Deferred"),
    ("bounced", "退信", "Bounced"),
    ("uncertain", "不确定", "Uncertain"),
    ("manual", "手动", "manual"),
    ("previews", "预览与测试副本", "Previews and test copies"),
    (
        "previews_note",
        "预览不发送给任何人；测试副本只发给一位读者。两者都不是当天的日报。",
        "A preview is sent to nobody; a test copy to one reader. Neither is the day's report.",
    ),
    ("preview", "预览", "Preview"),
    ("test_copy", "测试副本", "Test copy"),
    ("sent_to_nobody", "未发送给任何人", "Sent to nobody"),
    (
        "previewed_as",
        "以此收件人的视角",
        "As this recipient gets it",
    ),
    ("copy_of", "内容来源", "Copy of"),
    ("of_run", "日报", "run"),
    ("sources_failing", "未能获取的来源", "Sources that failed"),
    ("chat_message", "群消息", "Chat message"),
    ("state_running", "进行中", "Running"),
    ("state_ready", "已就绪", "Ready"),
    ("state_failed", "失败", "Failed"),
    ("state_sending", "发送中", "Sending"),
    ("state_sent", "已发送", "Sent"),
    ("state_refused", "已拒绝", "Refused"),
    ("state_uncertain", "不确定", "Uncertain"),
    ("previous", "上一页", "Previous"),
    ("next", "下一页", "Next"),
    ("page", "第 {} 页", "Page {}"),
    ("as_sent", "发送的内容", "As it was sent"),
    ("text_version", "纯文本版本", "Text version"),
    ("download", "下载", "Download"),
    ("steps", "步骤与耗时", "Steps and timings"),
    ("started", "开始", "Started"),
    ("duration_ms", "耗时 (ms)", "Time (ms)"),
    ("detail", "详情", "Detail"),
    ("delivery_log", "投递记录", "Delivery log"),
    ("all", "全部", "All"),
    ("filter", "筛选", "Filter"),
    ("recipient", "收件人", "Recipient"),
    ("email", "地址", "Address"),
    ("channel", "渠道", "Channel"),
    ("attempts", "尝试", "Attempts"),
    ("smtp_reply", "服务器回复", "Server reply"),
    ("subscribed", "订阅中", "Subscribed"),
    ("unsubscribed", "已退订", "Unsubscribed"),
    ("blacklisted", "已拉黑（退信）", "Blacklisted (bounce)"),
    ("blocked_manual", "已手动屏蔽", "Blocked by an operator"),
    ("since", "自", "Since"),
    ("resubscribe", "重新订阅", "Re-subscribe"),
    ("unblock", "解除屏蔽", "Unblock"),
    (
        "resubscribe_k8s",
        "在 Kubernetes 中：kubectl annotate recipient <名称> finrep.io/unblock=<新值> --overwrite",
        "In Kubernetes: kubectl annotate recipient <name> finrep.io/unblock=<new value> --overwrite",
    ),
    ("url", "地址", "URL"),
    ("last_fetch", "上次抓取", "Last fetch"),
    ("fetches_7d", "7 天抓取", "Fetches (7 days)"),
    ("failures_7d", "7 天失败", "Failures (7 days)"),
    ("avg_latency", "平均延迟 (ms)", "Average latency (ms)"),
    ("last_error", "最近错误", "Last error"),
    ("unsubscribe_title", "退订", "Unsubscribe"),
    (
        "unsubscribe_confirm",
        "确认后，此地址将不再收到该发件方的任何日报（包括上面这份和它发送的其他所有日报）：",
        "Once you confirm, this address receives no more reports from this sender (this report and every other report it sends):",
    ),
    (
        "unsubscribe_from_report",
        "您收到此链接的日报：",
        "The report this link came with:",
    ),
    ("unsubscribe_button", "确认退订", "Unsubscribe"),
    (
        "unsubscribe_done",
        "已退订。此地址不会再收到这些日报。",
        "You are unsubscribed. This address will receive no more of these reports.",
    ),
    (
        "resubscribe_offer",
        "误点了？可以用同一链接重新订阅：",
        "Clicked by mistake? The same link subscribes you again:",
    ),
    (
        "resubscribe_reason",
        "收件人同意的依据（必填）",
        "The recipient's consent (required)",
    ),
    ("resubscribe_button", "重新订阅", "Subscribe again"),
    (
        "resubscribe_done",
        "已重新订阅。此地址将再次收到该发件方的日报。",
        "You are subscribed again. This address will receive this sender's reports again.",
    ),
    (
        "unsubscribe_already",
        "此地址已经退订，无需再次操作。",
        "This address was already unsubscribed; nothing more to do.",
    ),
    (
        "unsubscribe_invalid",
        "此退订链接无效或不完整。请使用邮件中的完整链接；如仍有问题，请直接回复该邮件。",
        "This unsubscribe link is not valid or is incomplete. Use the whole link from the mail; if that fails, reply to the mail.",
    ),
    (
        "unsubscribe_unavailable",
        "退订服务暂不可用，请稍后重试。",
        "Unsubscribing is unavailable right now; please try again later.",
    ),
    ("glance", "各日报的最近一次", "Each report's latest slot"),
    ("search", "搜索", "Search"),
    ("health_30d", "近 30 天", "Last 30 days"),
    (
        "month_label",
        "近 {days} 天中有 {n} 天未能按时全部送达（每天一根柱：柱高是送达完成的时刻，虚线是发送时段结束；绿色按时，红色超出时段，黄色未全部送达，蓝色进行中，灰色没有运行）",
        "{n} of the last {days} days did not all go out on time (a bar a day, as high as when its delivery finished; the dashed line is the window's end; green on time, red after the window, yellow not all delivered, blue running, grey no run)",
    ),
    ("mail_window", "发送时段", "Mail window"),
    (
        "strip_label",
        "近 {days} 天中有 {n} 天抓取失败（每格一天：绿色正常，黄色部分失败，红色全部失败，灰色未抓取）",
        "{n} of the last {days} days had failed fetches (a cell a day: green fine, yellow some failed, red all failed, grey not fetched)",
    ),
    (
        "search_hint",
        "地址或名称的一部分",
        "Part of an address or a name",
    ),
    ("total_rows", "共 {n} 条", "{n} in all"),
    ("total_runs", "共 {n} 次运行", "{n} runs in all"),
    ("jump_to_date", "跳到日期", "Go to date"),
    (
        "deliveries_per_day",
        "每日投递（按日报日期）",
        "Deliveries per day (by report date)",
    ),
    ("days_30", "30 天", "30 days"),
    ("days_90", "90 天", "90 days"),
    (
        "chart_desc",
        "柱状图：每个日报日期一根柱子，自下而上依次为已发送、失败、推迟和其他；同样的数字见下方表格。",
        "Bar chart: one bar per report date, stacked from the bottom: sent, failed, deferred and other; the same numbers are in the table below.",
    ),
    ("other_outcome", "其他", "Other"),
    ("as_table", "以表格查看", "As a table"),
    (
        "busiest_day",
        "柱高以最多的一天为满格：{n} 份",
        "Bars scale to the busiest day: {n} copies",
    ),
    ("health_ok", "已送出", "Went out"),
    ("health_running", "进行中", "Running"),
    ("health_failed", "需要处理", "Needs attention"),
    ("health_missed", "未运行", "Did not run"),
    ("health_needs-check", "需要核对", "Needs a check"),
    ("health_never-run", "尚未运行", "Not run yet"),
    (
        "reason_run-failed",
        "运行失败，未全部送达。",
        "The run failed; not everything went out.",
    ),
    (
        "reason_not_all_delivered",
        "{failed} 份失败，{deferred} 份推迟。",
        "{failed} failed, {deferred} deferred.",
    ),
    (
        "reason_uncertain",
        "{n} 条群消息结果不明，请到群里核对。",
        "{n} chat post(s) of unknown fate: check the groups.",
    ),
    (
        "reason_slot_without_run",
        "{slot} 的时段已到，但没有运行。",
        "The slot of {slot} came due and nothing ran.",
    ),
    ("reason_missed", "该时段已错过。", "The slot was missed."),
    (
        "reason_delivered-late",
        "最后一份在发送时段结束后才送出。",
        "The last copy went out after the mail window closed.",
    ),
    ("last_delivery", "最后送达", "Last delivered"),
    ("window_end", "时段结束", "Window ends"),
    ("phase_Queued", "排队中", "Queued"),
    ("phase_Pending", "待开始", "Pending"),
    ("phase_Collecting", "采集中", "Collecting"),
    ("phase_Composing", "编排中", "Composing"),
    ("phase_Sending", "发送中", "Sending"),
    ("phase_Succeeded", "已送达", "Delivered"),
    ("phase_PartiallyDelivered", "部分送达", "Partly delivered"),
    ("phase_Failed", "失败", "Failed"),
    ("phase_Missed", "错过", "Missed"),
    ("step_collect", "采集", "Collect"),
    ("step_extract", "提取", "Extract"),
    ("step_summarize", "摘要", "Summarise"),
    ("step_compose", "编排", "Compose"),
    ("step_send", "发送", "Send"),
    ("channel_email", "邮件", "E-mail"),
    ("channel_wecom", "企业微信", "WeCom"),
    ("channel_dingtalk", "钉钉", "DingTalk"),
    ("channel_feishu", "飞书", "Feishu"),
    ("channel_lark", "飞书国际版", "Lark"),
    ("via_one-click", "一键退订", "one-click"),
    ("via_page", "确认页", "confirmation page"),
    ("error_400", "请求有误", "Bad request"),
    (
        "error_400_text",
        "这个地址的参数不对（例如页码不是正整数）。请从控制台的链接重新打开。",
        "This address has a parameter the console cannot read (a page number that is not a positive whole number, say). Open it again from the console's links.",
    ),
    ("error_403", "无法完成", "Not allowed"),
    (
        "error_403_text",
        "表单已过期或并非来自本控制台。请刷新页面后重试。",
        "The form has expired or did not come from this console. Reload the page and try again.",
    ),
    ("error_404", "未找到", "Not found"),
    (
        "error_404_text",
        "没有这个页面，或者它所指的日报、预览已不存在。",
        "There is no such page, or the report or preview it points to no longer exists.",
    ),
    ("error_405", "不支持此操作", "Not supported"),
    (
        "error_405_text",
        "此地址不接受这种请求。",
        "This address does not take this kind of request.",
    ),
    ("error_408", "请求超时", "Too slow"),
    (
        "error_408_text",
        "请求未能及时完成，请重试。",
        "The request did not arrive in time; try again.",
    ),
    ("error_413", "内容过大", "Too large"),
    (
        "error_413_text",
        "提交的内容超出了允许的大小。",
        "What was sent is larger than this console accepts.",
    ),
    ("error_429", "尝试过于频繁", "Too many attempts"),
    (
        "error_429_text",
        "尝试次数过多。请等待一分钟后再试。",
        "Too many attempts. Wait a minute, then try again.",
    ),
    ("error_503", "暂时不可用", "Unavailable for now"),
    (
        "error_503_text",
        "数据库暂时没有响应。请一分钟后重试。",
        "The database does not answer for now. Try again in a minute.",
    ),
    ("error_other", "出错了", "Something went wrong"),
    (
        "error_other_text",
        "控制台未能完成这个请求。请一分钟后重试；如果问题持续，请联系运维人员。",
        "The console could not answer this request. Try again in a minute; if it goes on, tell whoever runs finrep.",
    ),
    ("error_back", "返回控制台", "Back to the console"),
    ("unsubscribe_sender", "发件方：", "Sender:"),
    ("language", "English", "中文"),
    ("lang_switch", "en", "zh"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::ACCEPT_LANGUAGE,
            HeaderValue::from_static(v),
        );
        h
    }

    #[test]
    fn chinese_unless_asked_otherwise() {
        assert_eq!(Lang::of_request(None, &HeaderMap::new()), Lang::Zh);
        assert_eq!(Lang::of_request(None, &accept("en-US,en;q=0.9")), Lang::En);
        assert_eq!(
            Lang::of_request(None, &accept("fr, en;q=0.5, zh-CN;q=0.8")),
            Lang::Zh
        );
        assert_eq!(Lang::of_request(Some("en"), &accept("zh-CN")), Lang::En);
        assert_eq!(Lang::of_request(None, &accept("de, fr")), Lang::Zh);
    }

    #[test]
    fn keys_are_unique() {
        let keys: std::collections::BTreeSet<_> = TEXTS.iter().map(|t| t.0).collect();
        assert_eq!(keys.len(), TEXTS.len());
    }
}
