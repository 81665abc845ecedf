//! HTML building blocks: escaping, the page frame, tables, the lag chart
//! (inline SVG, no charting library), and payload views.

use std::fmt::Write;
use std::time::SystemTime;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 3339 with milliseconds (UTC).
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Bytes in a readable unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The page frame: navigation, a title, the content, the script.
pub fn page(base: &str, active: &str, title: &str, content: &str) -> String {
    let mut nav = String::new();
    for (href, label) in [
        ("streams", "Streams"),
        ("consumers", "Consumers"),
        ("dead-letters", "Dead letters"),
        ("events", "Events"),
    ] {
        let class = if href == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{base}/{href}\"{class}>{label}</a>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · angzarr bus</title>\
         <link rel=\"stylesheet\" href=\"{base}/static/console.css\"></head>\
         <body data-base=\"{base}\"><header><span class=\"brand\">angzarr bus</span><nav>{nav}</nav>\
         <span class=\"live\" id=\"live-status\">live</span></header>\
         <main><h1>{t}</h1>{content}</main>\
         <script src=\"{base}/static/console.js\"></script></body></html>\n",
        t = esc(title),
    )
}

/// A table with a header row; cells are HTML already.
pub fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A live figure: text the script replaces from the live endpoint's `key`.
pub fn live(key: &str, text: &str) -> String {
    format!("<span data-live=\"{}\">{}</span>", esc(key), esc(text))
}

/// The lag chart of one consumer: pending events over time as an SVG
/// polyline (the script redraws it from the live endpoint).
pub fn lag_chart(consumer: &str, series: &[(f64, u64)]) -> String {
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 200 40\" preserveAspectRatio=\"none\" \
         data-chart=\"{}\" role=\"img\" aria-label=\"pending events over time\">\
         <polyline points=\"{}\"/></svg>",
        esc(consumer),
        polyline(series)
    )
}

/// Points of a 200x40 polyline for `series` (time, value), scaled to fit.
pub fn polyline(series: &[(f64, u64)]) -> String {
    if series.is_empty() {
        return String::new();
    }
    let t0 = series[0].0;
    let t1 = series[series.len() - 1].0;
    let span = (t1 - t0).max(1.0);
    let max = series.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let mut out = String::new();
    for (t, v) in series {
        let x = (t - t0) / span * 200.0;
        let y = 39.0 - (*v as f64 / max) * 38.0;
        let _ = write!(out, "{x:.1},{y:.1} ");
    }
    out.trim_end().to_owned()
}

/// A payload three ways: as text (when it is UTF-8), as JSON (when it
/// parses), and as hex (always; the first 4 KiB).
pub fn payload_views(bytes_: &[u8]) -> String {
    let mut out = String::from("<div class=\"payload\">");
    match std::str::from_utf8(bytes_) {
        Ok(text) => {
            let _ = write!(
                out,
                "<h3>Text</h3><pre class=\"text\" id=\"payload-text\">{}</pre>",
                esc(text)
            );
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
                let _ = write!(
                    out,
                    "<h3>JSON</h3><pre class=\"json\" id=\"payload-json\">{}</pre>",
                    esc(&pretty)
                );
            } else {
                out.push_str("<h3>JSON</h3><p class=\"muted\">not JSON</p>");
            }
        }
        Err(_) => out.push_str("<h3>Text</h3><p class=\"muted\">not UTF-8 text</p>"),
    }
    let shown = &bytes_[..bytes_.len().min(4096)];
    let mut hex = String::new();
    for (i, chunk) in shown.chunks(16).enumerate() {
        let _ = write!(hex, "{:08x}  ", i * 16);
        for b in chunk {
            let _ = write!(hex, "{b:02x} ");
        }
        for _ in chunk.len()..16 {
            hex.push_str("   ");
        }
        hex.push(' ');
        for b in chunk {
            hex.push(if b.is_ascii_graphic() || *b == b' ' {
                *b as char
            } else {
                '.'
            });
        }
        hex.push('\n');
    }
    let more = if bytes_.len() > shown.len() {
        format!(" (first {} of {} bytes)", shown.len(), bytes_.len())
    } else {
        format!(" ({} bytes)", bytes_.len())
    };
    let _ = write!(
        out,
        "<h3>Hex{}</h3><pre class=\"hex\" id=\"payload-hex\">{}</pre></div>",
        esc(&more),
        esc(&hex)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn payload_shows_text_json_and_hex() {
        let v = payload_views(br#"{"amount":5}"#);
        assert!(v.contains("payload-json"), "{v}");
        assert!(v.contains("&quot;amount&quot;: 5"), "{v}");
        assert!(v.contains("7b 22 61"), "{v}");
        let v = payload_views(&[0xff, 0x00, 0x41]);
        assert!(v.contains("not UTF-8"), "{v}");
        assert!(v.contains("ff 00 41"), "{v}");
    }

    #[test]
    fn chart_points_fit_the_box() {
        let p = polyline(&[(10.0, 0), (11.0, 5), (12.0, 10)]);
        assert_eq!(p, "0.0,39.0 100.0,20.0 200.0,1.0");
        assert_eq!(polyline(&[]), "");
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
