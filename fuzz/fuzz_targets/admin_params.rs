//! The admin API's query-string parser (filters, paging, cursors), shared with the CLI.
//! Layout: byte 0 picks paging on/off and the cursor order, then `QUERY_STRING \n CURSOR`.
//! Besides never panicking: a cursor this server issues decodes to itself, and a parsed query
//! string re-serialises with a cursor without losing a parameter.
#![no_main]

use authtrail::admin::filter::{self, Cursor, Order, Params};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
    let text = String::from_utf8_lossy(rest);
    let (query, cursor) = text.split_once('\n').unwrap_or((&text, ""));
    let order = if mode & 2 == 0 {
        Order::Asc
    } else {
        Order::Desc
    };

    let _ = filter::parse_time(cursor, now);
    let _ = Cursor::decode(cursor, order);
    if let Ok(seq) = cursor.parse::<i64>() {
        let c = Cursor {
            order,
            seq: seq.max(0),
        };
        assert_eq!(Cursor::decode(&c.encode(), order).unwrap(), c);
    }

    let paging = mode & 1 == 1;
    if let Ok(p) = Params::from_query_string(Some(query), paging, &["format", "bucket"], 1000, now)
    {
        let _ = p.cursor(order);
        let _ = p.filters.to_query(Some(vec!["app-a".into()]));
        let _ = p.as_json();
        let next = Cursor { order, seq: 42 };
        let again = p.with_cursor(&next);
        let reparsed =
            Params::from_query_string(Some(&again), true, &["format", "bucket"], 1000, now);
        if paging {
            let reparsed = reparsed.expect("a query string we wrote parses");
            assert_eq!(reparsed.cursor(order).unwrap(), Some(next));
            assert_eq!(reparsed.filters, p.filters);
        }
    }
});
