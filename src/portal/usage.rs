//! The `Usage` port: balances, the usage page and its CSV export, the
//! dashboard, the request log and its entries. Reads the rollups and the
//! log through `crate::usage`; here only what the caller may see, and the
//! shape the pages want. A key id or request id that is not the caller's
//! organization's is "not found", never a hint that it exists.

use super::{errors, member, Member, Portal};
use crate::api_keys::Mode;
use crate::usage::forecast::Forecast;
use crate::usage::log::{self, Class, Cursor, LogFilter};
use crate::usage::outlook::{self, Outlook, Warning};
use crate::usage::rollups::{self, Span};
use crate::usage::{group, latency, Filter, OUTCOMES};
use app::backend::{Caller, Usage};
use app::error::AppError;
use app::types::*;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::usage::{csv_field, rfc3339};

/// "2026-12-01 10:15:03 UTC".
fn stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02}:{:02} UTC", t.date(), t.hour(), t.minute(), t.second())
}

fn bucket_label(span: Span, t: OffsetDateTime) -> String {
    match span {
        Span::Hours24 => format!("{:02}:00", t.hour()),
        Span::Days(_) => format!("{} {}", &t.month().to_string()[..3], t.day()),
    }
}

/// The organization's keys, revoked ones too (their calls stay in the log).
async fn keys(db: &sqlx::PgPool, org: Uuid) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    Ok(crate::api_keys::store::labels(db, org)
        .await?
        .into_iter()
        .map(|k| {
            let state = if k.revoked { ", revoked" } else { "" };
            (k.id, format!("{} ({}…{}, {}{state})", k.name, k.prefix, k.last4, k.mode))
        })
        .collect())
}

/// A key id from the URL: empty is none; anything else must be one of the
/// organization's keys, or the page is not found.
fn key_filter(value: &str, keys: &[(Uuid, String)]) -> Result<Option<Uuid>, AppError> {
    if value.is_empty() {
        return Ok(None);
    }
    let id = Uuid::parse_str(value).map_err(|_| AppError::NotFound)?;
    if keys.iter().any(|(k, _)| *k == id) {
        Ok(Some(id))
    } else {
        Err(AppError::NotFound)
    }
}

fn mode_filter(value: &str) -> Result<Option<Mode>, AppError> {
    if value.is_empty() {
        return Ok(None);
    }
    Mode::parse(value).map(Some).ok_or_else(|| AppError::Invalid("The mode is live or test.".into()))
}

fn choices(keys: &[(Uuid, String)]) -> Vec<Choice> {
    keys.iter().map(|(id, label)| Choice { value: id.to_string(), label: label.clone() }).collect()
}

/// The outlook as pages show it; fix links come back to `back`.
pub fn outlook_view(o: &Outlook, back: &str) -> OutlookView {
    let back = app::components::encode_component(back);
    let warnings = o
        .crossed
        .iter()
        .map(|w| match w {
            Warning::LowBalance => Banner {
                kind: "low_balance".into(),
                text: format!("Your balance is low: {} credits left.", group(o.balances.live())),
                link: Some(("Top up".into(), format!("/billing/top-up?return_to={back}"))),
            },
            Warning::IncludedUsed => Banner {
                kind: "included_used".into(),
                text: format!(
                    "You have used {}% of this period's included credits ({} of {}).",
                    (o.included.used * 100) / o.included.of.max(1),
                    group(o.included.used),
                    group(o.included.of)
                ),
                link: Some(("Top up or upgrade".into(), format!("/billing/plans?return_to={back}"))),
            },
            Warning::SpendCapUsed => Banner {
                kind: "spend_cap_used".into(),
                text: format!(
                    "You have spent {} of your {} credit spend cap this period.",
                    group(o.thresholds.period_spent),
                    group(o.thresholds.spend_cap.unwrap_or(0))
                ),
                link: Some(("Raise the cap".into(), format!("/billing/limits?return_to={back}"))),
            },
        })
        .collect();
    OutlookView {
        included_used: o.included.used,
        included_of: o.included.of,
        reset_on: o.included.period_end.map(outlook::day).unwrap_or_default(),
        included_left: o.balances.included,
        purchased: o.balances.purchased,
        sandbox: o.balances.sandbox,
        forecast: outlook::forecast_sentence(&o.forecast),
        runs_out: matches!(o.forecast, Forecast::RunsOut { .. }),
        warnings,
        warn_included_pct: o.thresholds.included_pct,
    }
}

/// The site-relative form of a problem body's fix link, sent back to
/// `return_to` afterwards. Only links to this portal are kept.
fn fix_link(config: &crate::config::Config, href: &str, return_to: &str) -> Option<String> {
    let base = config.public_url.as_str().trim_end_matches('/');
    let rest = href.strip_prefix(base)?;
    if !rest.starts_with('/') || rest.starts_with("//") {
        return None;
    }
    let mut url = url::Url::parse(&format!("http://portal.invalid{rest}")).ok()?;
    let pairs: Vec<(String, String)> = url.query_pairs().filter(|(k, _)| k != "return_to").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.query_pairs_mut().clear().extend_pairs(pairs).append_pair("return_to", return_to);
    // The parser turns `\` into `/`: check what comes out, not what went in.
    let path = url.path();
    if path.starts_with("//") || !path.starts_with('/') {
        return None;
    }
    Some(format!("{path}?{}", url.query().unwrap_or_default()))
}

fn fixes(config: &crate::config::Config, body: &serde_json::Value, return_to: &str) -> Vec<FixLink> {
    body.get("resolution")
        .and_then(|r| r.as_array())
        .map(|links| {
            links
                .iter()
                .filter_map(|l| {
                    let label = l.get("label")?.as_str()?.to_string();
                    let href = fix_link(config, l.get("href")?.as_str()?, return_to)?;
                    Some(FixLink { label, href })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn row_view(r: &log::LogRow) -> LogRowView {
    LogRowView {
        request_id: r.request_id.clone(),
        at: rfc3339(r.at),
        at_label: stamp(r.at),
        method: r.method.clone(),
        endpoint: r.endpoint.clone(),
        status: r.status,
        code: r.code.clone().unwrap_or_default(),
        credits: r.credits,
        latency: latency::describe(r.latency_us),
        key_prefix: r.key_prefix.clone().unwrap_or_else(|| "—".into()),
        key_revoked: r.key_revoked,
        mode: r.mode.clone(),
    }
}

/// A log filter's time: `YYYY-MM-DD` (midnight) or `YYYY-MM-DDTHH:MM`, UTC.
fn parse_time(value: &str) -> Option<OffsetDateTime> {
    let v = value.trim();
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    let dt_fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    if let Ok(d) = time::Date::parse(v, &date_fmt) {
        return Some(d.midnight().assume_utc());
    }
    time::PrimitiveDateTime::parse(v, &dt_fmt).ok().map(|t| t.assume_utc())
}

impl Portal {
    fn log_reader(&self, caller: &Caller) -> Result<Member, AppError> {
        let m = member(caller)?;
        if m.role.reads_request_log() {
            Ok(m)
        } else {
            Err(AppError::Forbidden)
        }
    }

    async fn selection(&self, caller: &Caller, m: &Member, q: &UsageQuery) -> Result<(Span, Filter, Vec<(Uuid, String)>), AppError> {
        let span = if q.span.is_empty() { Span::Days(7) } else { Span::parse(&q.span).ok_or(AppError::NotFound)? };
        let keys = keys(&self.state.db, m.org).await.map_err(|e| errors::page(caller, e))?;
        let filter = Filter { key: key_filter(&q.key, &keys)?, mode: mode_filter(&q.mode)? };
        Ok((span, filter, keys))
    }
}

#[async_trait::async_trait]
impl Usage for Portal {
    async fn balances(&self, caller: &Caller) -> Result<Balances, AppError> {
        let m = member(caller)?;
        let b = crate::billing::ledger::spendable(&self.state.db, m.org, self.now())
            .await
            .map_err(|e| errors::page(caller, e))?;
        Ok(Balances {
            live: b.live(),
            sandbox: b.sandbox,
        })
    }

    async fn usage_page(&self, caller: &Caller, q: UsageQuery) -> Result<UsagePage, AppError> {
        let m = member(caller)?;
        let (span, filter, keys) = self.selection(caller, &m, &q).await?;
        let db = &self.state.db;
        let now = self.now();
        let page = |e| errors::page(caller, e);
        let points = rollups::series(db, m.org, span, &filter, now).await.map_err(page)?;
        let endpoints = rollups::endpoints(db, m.org, span, &filter, now).await.map_err(page)?;
        let outlook = outlook::outlook(db, m.org, now).await.map_err(page)?;
        // Outcome classes in chart order: the usual four always, the rest
        // when they occur.
        let outcomes: Vec<String> = OUTCOMES
            .iter()
            .filter(|o| matches!(**o, "2xx" | "402" | "429" | "4xx") || points.iter().any(|p| p.outcome == **o))
            .map(|o| o.to_string())
            .collect();
        let buckets: Vec<BucketView> = span
            .buckets(now)
            .into_iter()
            .map(|start| {
                let here: Vec<_> = points.iter().filter(|p| p.bucket == start).collect();
                let live = |f: fn(&rollups::Point) -> i64| here.iter().filter(|p| p.mode == "live").map(|p| f(p)).sum::<i64>();
                BucketView {
                    start: rfc3339(start),
                    label: bucket_label(span, start),
                    calls: outcomes.iter().map(|o| here.iter().filter(|p| &p.outcome == o).map(|p| p.calls).sum()).collect(),
                    credits_included: live(|p| p.credits - p.credits_purchased),
                    credits_purchased: live(|p| p.credits_purchased),
                    credits_sandbox: here.iter().filter(|p| p.mode == "test").map(|p| p.credits).sum(),
                }
            })
            .collect();
        Ok(UsagePage {
            spans: ["24h", "7d", "30d", "90d"]
                .iter()
                .map(|s| Choice {
                    value: s.to_string(),
                    label: match *s { "24h" => "24 hours", "7d" => "7 days", "30d" => "30 days", _ => "90 days" }.into(),
                })
                .collect(),
            query: UsageQuery { span: span.as_str().into(), key: q.key, mode: q.mode },
            keys: choices(&keys),
            total_calls: buckets.iter().map(|b| b.calls.iter().sum::<i64>()).sum(),
            total_credits_included: buckets.iter().map(|b| b.credits_included).sum(),
            total_credits_purchased: buckets.iter().map(|b| b.credits_purchased).sum(),
            total_credits_sandbox: buckets.iter().map(|b| b.credits_sandbox).sum(),
            outcomes,
            buckets,
            endpoints: endpoints
                .iter()
                .map(|e| EndpointUsageView {
                    endpoint: e.endpoint.clone(),
                    calls: e.calls,
                    refused_402: e.refused_402,
                    credits: e.credits,
                    p50: latency::percentile(&e.latency, 0.5).map(latency::describe).unwrap_or_else(|| "—".into()),
                    p95: latency::percentile(&e.latency, 0.95).map(latency::describe).unwrap_or_else(|| "—".into()),
                })
                .collect(),
            outlook: outlook_view(&outlook, "/account/usage"),
            bucket_name: match span { Span::Hours24 => "Hour (UTC)", Span::Days(_) => "Day (UTC)" }.into(),
            can_see_log: m.role.reads_request_log(),
        })
    }

    async fn usage_csv(&self, caller: &Caller, q: UsageQuery) -> Result<String, AppError> {
        let m = member(caller)?;
        let (span, filter, _) = self.selection(caller, &m, &q).await?;
        let rows = rollups::export(&self.state.db, m.org, span, &filter, self.now()).await.map_err(|e| errors::page(caller, e))?;
        let mut out = String::from("bucket_start_utc,endpoint,mode,outcome,code,calls,credits_included,credits_purchased,credits_sandbox\n");
        for r in rows {
            let (inc, pur, sand) = if r.mode == "test" { (0, 0, r.credits) } else { (r.credits - r.credits_purchased, r.credits_purchased, 0) };
            out.push_str(&format!(
                "{},{},{},{},{},{},{inc},{pur},{sand}\n",
                rfc3339(r.bucket),
                csv_field(&r.endpoint),
                r.mode,
                r.outcome,
                csv_field(&r.code),
                r.calls
            ));
        }
        Ok(out)
    }

    async fn dashboard(&self, caller: &Caller) -> Result<Dashboard, AppError> {
        let m = member(caller)?;
        let db = &self.state.db;
        let now = self.now();
        let page = |e| errors::page(caller, e);
        let o = outlook::outlook(db, m.org, now).await.map_err(page)?;
        let (today_calls, today_402) = rollups::today(db, m.org, now).await.map_err(page)?;
        let last = log::last_refused(db, m.org).await.map_err(page)?;
        let can_see_log = m.role.reads_request_log();
        let last_refused = last.map(|e| {
            let back = if can_see_log { format!("/account/logs/{}", e.row.request_id) } else { "/account".to_string() };
            let body = e.problem_body.clone().unwrap_or_default();
            let mut row = row_view(&e.row);
            if !can_see_log {
                // What the log holds (request id, key, latency) is for
                // those who read the log; the rest see when, what and the fix.
                row.request_id = String::new();
                row.key_prefix = String::new();
                row.latency = String::new();
            }
            RefusedView {
                title: body.get("title").and_then(|t| t.as_str()).unwrap_or_default().to_string(),
                fix: fixes(&self.state.config, &body, &back).into_iter().next(),
                row,
            }
        });
        Ok(Dashboard { outlook: outlook_view(&o, "/account"), today_calls, today_402, last_refused, can_see_log })
    }

    async fn log_page(&self, caller: &Caller, q: LogQuery) -> Result<LogPage, AppError> {
        let m = self.log_reader(caller)?;
        let db = &self.state.db;
        let page = |e| errors::page(caller, e);
        let keys = keys(db, m.org).await.map_err(page)?;
        let mut errors = Vec::new();
        let mut field = |name: &str, msg: &str| errors.push((name.to_string(), msg.to_string()));
        let class = match q.class.as_str() {
            "" => None,
            c => Class::parse(c).or_else(|| {
                field("class", "Choose a status class from the list.");
                None
            }),
        };
        let code = (!q.code.is_empty()).then(|| q.code.clone()).filter(|c| {
            let ok = crate::gateway::catalogue::Code::parse(c).is_some();
            if !ok {
                field("code", "Choose a problem code from the list.");
            }
            ok
        });
        let mode = match q.mode.as_str() {
            "" => None,
            v => Mode::parse(v).or_else(|| {
                field("mode", "The mode is live or test.");
                None
            }),
        };
        let mut time = |name: &str, v: &str| {
            if v.is_empty() {
                return None;
            }
            let t = parse_time(v);
            if t.is_none() {
                field(name, "A date like 2026-12-01, or a time like 2026-12-01T14:30 (UTC).");
            }
            t
        };
        let from = time("from", &q.from);
        let to = time("to", &q.to);
        let (endpoints, codes) = log::choices(db, m.org).await.map_err(page)?;
        // Only endpoints the organization called: an unknown one would make
        // the query read the whole log to find nothing.
        let endpoint = match q.endpoint.as_str() {
            "" => None,
            e if endpoints.iter().any(|x| x == e) => Some(e.to_string()),
            _ => {
                errors.push(("endpoint".to_string(), "Choose an endpoint from the list.".to_string()));
                None
            }
        };
        let mut q = q;
        q.endpoint = q.endpoint.chars().take(200).collect();
        let filter = LogFilter {
            class,
            code,
            key: key_filter(&q.key, &keys)?,
            endpoint,
            mode,
            from,
            to,
        };
        let after = if q.after.is_empty() { None } else { Some(Cursor::decode(&q.after).ok_or(AppError::NotFound)?) };
        // A filter that could not be read shows nothing rather than the
        // whole log under a filter the reader did not ask for.
        let (rows, next) = if errors.is_empty() {
            log::page(db, m.org, &filter, after.as_ref(), log::PAGE).await.map_err(page)?
        } else {
            (Vec::new(), None)
        };
        let filters = q.filters_query();
        let older = next.map(|c| {
            let sep = if filters.is_empty() { "" } else { "&" };
            format!("/account/logs?{filters}{sep}after={}", c.encode())
        });
        Ok(LogPage {
            rows: rows.iter().map(row_view).collect(),
            older,
            classes: [("2xx", "2xx success"), ("402", "402 payment required"), ("429", "429 rate limited"), ("4xx", "Other 4xx"), ("5xx", "5xx")]
                .iter()
                .map(|(v, l)| Choice { value: v.to_string(), label: l.to_string() })
                .collect(),
            codes: codes.into_iter().map(|c| Choice { label: c.clone(), value: c }).collect(),
            keys: choices(&keys),
            endpoints: endpoints.into_iter().map(|e| Choice { label: e.clone(), value: e }).collect(),
            errors,
            query: q,
        })
    }

    async fn log_entry(&self, caller: &Caller, request_id: String) -> Result<LogEntryPage, AppError> {
        let m = self.log_reader(caller)?;
        if request_id.is_empty() || request_id.len() > 64 {
            return Err(AppError::NotFound);
        }
        let e = log::entry(&self.state.db, m.org, &request_id)
            .await
            .map_err(|e| errors::page(caller, e))?
            .ok_or(AppError::NotFound)?;
        let back = format!("/account/logs/{}", e.row.request_id);
        let body = e.problem_body.clone();
        let text = |k: &str| body.as_ref().and_then(|b| b.get(k)).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let r = &e.row;
        let (inc, pur, sand) = if r.mode == "test" { (0, 0, r.credits) } else { (r.credits - r.credits_purchased, r.credits_purchased, 0) };
        // The explorer fills in the endpoint's method and path.
        let explorer = format!("/explorer?endpoint={}", app::components::encode_component(&r.endpoint));
        Ok(LogEntryPage {
            body: body.as_ref().and_then(|b| serde_json::to_string_pretty(b).ok()),
            title: text("title"),
            detail: text("detail"),
            fixes: body.as_ref().map(|b| fixes(&self.state.config, b, &back)).unwrap_or_default(),
            docs: body.as_ref().and_then(|b| b.get("type")).and_then(|t| t.as_str()).and_then(|t| {
                let base = self.state.config.public_url.as_str().trim_end_matches('/');
                t.strip_prefix(base).filter(|p| p.starts_with("/docs/")).map(str::to_string)
            }),
            credits_included: inc,
            credits_purchased: pur,
            credits_sandbox: sand,
            explorer,
            row: row_view(r),
        })
    }
}

/// `GET /account/usage.csv`: the usage page's selection as CSV (a plain
/// download; the page's own query string).
pub fn router() -> axum::Router<crate::state::AppState> {
    axum::Router::new().route("/account/usage.csv", axum::routing::get(export_csv))
}

async fn export_csv(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let query = UsageQuery { span: get("span"), key: get("key"), mode: get("mode") };
    csv_download(state, req, "usage.csv", "/account/usage", |backend, caller| async move {
        backend.usage.usage_csv(&caller, query).await
    })
    .await
}

/// A CSV download behind a page: who asks is resolved as for the page, and
/// a refusal is the page's (sign in, 403, 404) as plain text.
pub(crate) async fn csv_download<F, Fut>(
    state: crate::state::AppState,
    req: axum::extract::Request,
    filename: &str,
    page: &str,
    make: F,
) -> axum::response::Response
where
    F: FnOnce(app::backend::Backend, app::backend::Caller) -> Fut,
    Fut: std::future::Future<Output = Result<String, AppError>>,
{
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let (parts, _) = req.into_parts();
    let backend = Portal::backend(state);
    let text = |status: StatusCode, body: String| (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    let caller = match backend.web.caller(&parts).await {
        Ok(c) => c,
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match make(backend, caller).await {
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            csv,
        )
            .into_response(),
        Err(AppError::NotSignedIn) => {
            let back = url::form_urlencoded::byte_serialize(page.as_bytes()).collect::<String>();
            axum::response::Redirect::to(&format!("/login?return_to={back}")).into_response()
        }
        Err(AppError::NotFound) => text(StatusCode::NOT_FOUND, "Not found.".into()),
        Err(AppError::Forbidden) => text(StatusCode::FORBIDDEN, AppError::Forbidden.to_string()),
        Err(e @ AppError::Invalid(_)) => text(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_links_stay_on_the_portal_and_come_back_to_the_entry() {
        let config = crate::config::Config::for_tests();
        assert_eq!(
            fix_link(&config, "http://portal.test/billing/top-up?credits=1000&return_to=%2Fexplorer", "/account/logs/req_1").as_deref(),
            Some("/billing/top-up?credits=1000&return_to=%2Faccount%2Flogs%2Freq_1")
        );
        assert_eq!(fix_link(&config, "https://evil.example/billing", "/x"), None);
        assert_eq!(fix_link(&config, "http://portal.test.evil.example/billing", "/x"), None);
        assert_eq!(fix_link(&config, "http://portal.test//evil.example/", "/x"), None);
        assert_eq!(fix_link(&config, "http://portal.test/\\evil.example/", "/x"), None);
        assert_eq!(fix_link(&config, "http://portal.test/%2f%2fevil.example/", "/x").as_deref(), Some("/%2f%2fevil.example/?return_to=%2Fx"));
    }

    #[test]
    fn log_times_are_dates_or_minutes_in_utc() {
        assert_eq!(parse_time("2026-12-01"), Some(time::macros::datetime!(2026-12-01 0:00 UTC)));
        assert_eq!(parse_time("2026-12-01T14:30"), Some(time::macros::datetime!(2026-12-01 14:30 UTC)));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("ping"), "ping");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
