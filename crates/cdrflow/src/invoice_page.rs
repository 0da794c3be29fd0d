//! An invoice document (`cdrflow.invoice/1`) as a self-contained HTML page:
//! no script, no external style sheet, font or image, so it prints and
//! archives as it is. Made from the stored JSON document, so the page and
//! the JSON never say different things.

use serde_json::Value;

/// Text for HTML: the five characters that could end a text node or an attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

fn text(value: &Value, path: &[&str]) -> String {
    let mut v = value;
    for key in path {
        v = &v[*key];
    }
    match v {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2330;max-width:52rem;margin:2rem auto;padding:0 1.5rem}\
header{display:flex;justify-content:space-between;align-items:flex-start;border-bottom:3px solid #1f6feb;padding-bottom:1rem}\
h1{margin:0;font-size:1.6rem}.muted{color:#5b6473}.status{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-size:.8rem;text-transform:uppercase;letter-spacing:.05em}\
.draft{background:#fff4ce;color:#7a5b00}.finalised{background:#dcf5e3;color:#116329}.void{background:#fde2e1;color:#a40e26}\
table{width:100%;border-collapse:collapse;margin-top:1.5rem}th,td{padding:.45rem .5rem;border-bottom:1px solid #e3e7ee;text-align:left;vertical-align:top}\
th{font-size:.8rem;text-transform:uppercase;color:#5b6473;letter-spacing:.04em}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.totals{width:22rem;margin-left:auto}.totals td{border:none;padding:.25rem .5rem}.grand td{border-top:2px solid #1d2330;font-weight:700;font-size:1.1rem}\
footer{margin-top:2rem;font-size:.8rem;color:#5b6473}";

/// The page of `document` (a parsed `cdrflow.invoice/1`).
pub fn invoice_html(document: &Value) -> String {
    let currency = text(document, &["currency"]);
    let status = text(document, &["status"]);
    let title = match document["number"].as_str() {
        Some(number) => format!("Invoice {}", escape(number)),
        None => format!("Draft invoice {}", text(document, &["invoice_id"])),
    };
    let mut lines = String::new();
    for line in document["lines"].as_array().into_iter().flatten() {
        let quantity = match line["unit"].as_str() {
            Some("percent_milli") => String::new(),
            Some(unit) => format!("{} {}", text(line, &["quantity"]), escape(unit)),
            None => String::new(),
        };
        lines.push_str(&format!(
            "<tr><td>{}</td><td>{}<div class=\"muted\">{}</div></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            text(line, &["line"]),
            text(line, &["description"]),
            text(line, &["category"]).replace('_', " "),
            quantity,
            text(line, &["amount"]),
        ));
    }
    let totals = &document["totals"];
    let mut sums = String::new();
    for (label, key) in [
        ("Voice", "voice"),
        ("SMS", "sms"),
        ("Data", "data"),
        ("Other usage", "other"),
        ("Recurring", "recurring"),
        ("Discounts", "discounts"),
        ("Subtotal", "subtotal"),
    ] {
        sums.push_str(&format!(
            "<tr><td>{label}</td><td class=\"n\">{}</td></tr>",
            text(totals, &[key])
        ));
    }
    for tax in document["taxes"].as_array().into_iter().flatten() {
        sums.push_str(&format!(
            "<tr><td>Tax {}% on {}{}</td><td class=\"n\">{}</td></tr>",
            text(tax, &["percent"]),
            text(tax, &["base"]),
            if document["prices_include_tax"] == Value::Bool(true) {
                " (included)"
            } else {
                ""
            },
            text(tax, &["amount"]),
        ));
    }
    sums.push_str(&format!(
        "<tr class=\"grand\"><td>Total</td><td class=\"n\">{} {currency}</td></tr>",
        text(totals, &["total"])
    ));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head>\n<body>\
<header><div><h1>{title}</h1><div class=\"muted\">{entity} · period {period} ({first} to {last})</div></div>\
<div><span class=\"status {status}\">{status}</span><div class=\"muted\">{issued}</div></div></header>\n\
<section><p><strong>{name}</strong><br><span class=\"muted\">Customer {customer} · {country}</span></p></section>\n\
<table><thead><tr><th>#</th><th>Description</th><th class=\"n\">Quantity</th><th class=\"n\">Amount ({currency})</th></tr></thead><tbody>\n{lines}</tbody></table>\n\
<table class=\"totals\"><tbody>{sums}</tbody></table>\n\
<footer>{schema} · {invoice_id} · every usage line lists its rated records at /invoices/{{number}}/lines/{{line}}/records</footer>\n</body></html>\n",
        entity = text(document, &["entity"]),
        period = text(document, &["period", "name"]),
        first = text(document, &["period", "first_day"]),
        last = text(document, &["period", "last_day"]),
        issued = match document["issue_date"].as_str() {
            Some(day) => format!("issued {}", escape(day)),
            None => "not issued".to_string(),
        },
        name = text(document, &["customer", "name"]),
        customer = text(document, &["customer", "id"]),
        country = text(document, &["customer", "billing_country"]),
        schema = text(document, &["schema"]),
        invoice_id = text(document, &["invoice_id"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_document_cannot_become_markup() {
        let document = serde_json::json!({
            "invoice_id": "C1:2024-03:1", "number": null, "status": "draft",
            "customer": {"name": "<script>alert('x')</script>"},
            "lines": [{"line": 1, "description": "a & b", "amount": "1.00", "unit": "records", "quantity": 2}],
            "totals": {"total": "1.20"}, "taxes": [], "currency": "MAD",
        });
        let page = invoice_html(&document);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("a &amp; b"));
        assert!(page.contains("Draft invoice C1:2024-03:1"));
        assert!(page.contains("1.20 MAD"));
    }
}
