//! Cron schedules (the standard 5-field syntax CronJobs use, with robfig/cron's messages).

#[allow(unused_imports)]
use super::*;

pub(super) struct CronField {
    pub(super) minimum: i64,
    pub(super) maximum: i64,
    pub(super) names: &'static [&'static str],
}

pub(super) const CRON_FIELDS: [CronField; 5] = [
    CronField {
        minimum: 0,
        maximum: 59,
        names: &[],
    },
    CronField {
        minimum: 0,
        maximum: 23,
        names: &[],
    },
    CronField {
        minimum: 1,
        maximum: 31,
        names: &[],
    },
    CronField {
        minimum: 1,
        maximum: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    CronField {
        minimum: 0,
        maximum: 6,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

pub(super) fn cron_integer(text: &str) -> Result<i64, String> {
    let number: i64 = text.parse().map_err(|_| {
        format!(
            "failed to parse int from {text}: strconv.Atoi: parsing {}: invalid syntax",
            go_quote(text)
        )
    })?;
    if number < 0 {
        return Err(format!("negative number ({number}) not allowed: {text}"));
    }
    Ok(number)
}

pub(super) fn cron_integer_or_name(text: &str, field: &CronField) -> Result<i64, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(position) = field.names.iter().position(|name| *name == lower) {
        // Month names count from 1, weekday names from 0 (the field minimum).
        return Ok(field.minimum + position as i64);
    }
    cron_integer(text)
}

pub(super) fn cron_range(expression: &str, field: &CronField) -> Result<(), String> {
    let range_and_step: Vec<&str> = expression.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (field.minimum, field.maximum)
    } else {
        let start = cron_integer_or_name(low_and_high[0], field)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => cron_integer_or_name(low_and_high[1], field)?,
            _ => return Err(format!("too many hyphens: {expression}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_integer(range_and_step[1])?;
            if single {
                end = field.maximum;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expression}")),
    };
    if start < field.minimum {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expression}",
            field.minimum
        ));
    }
    if end > field.maximum {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expression}",
            field.maximum
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expression}"
        ));
    }
    if step == 0 {
        return Err(format!(
            "step of range should be a positive number: {expression}"
        ));
    }
    Ok(())
}

/// Go's `time.ParseDuration` acceptance check, for `@every <duration>`.
pub(super) fn parse_go_duration(text: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {}", go_quote(text));
    let mut rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_end = rest
            .bytes()
            .position(|byte| !(byte.is_ascii_digit() || byte == b'.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        rest = &rest[number_end..];
        let unit_end = rest
            .bytes()
            .position(|byte| byte.is_ascii_digit() || byte == b'.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(text)));
        }
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return Err(format!(
                "time: unknown unit {} in duration {}",
                go_quote(unit),
                go_quote(text)
            ));
        }
        rest = &rest[unit_end..];
    }
    Ok(())
}

/// Checks a CronJob schedule like `cron.ParseStandard`: five fields (minute, hour, day of
/// month, month, day of week) or a descriptor (`@hourly`, `@every 5m`, …).
pub fn parse_cron_schedule(schedule: &str) -> Result<(), String> {
    let mut spec = schedule.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec = spec
            .split_once(' ')
            .map(|(_, rest)| rest.trim())
            .unwrap_or("");
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match descriptor.strip_prefix("every ") {
                Some(duration) => parse_go_duration(duration)
                    .map_err(|error| format!("failed to parse duration {spec}: {error}")),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (text, field) in fields.iter().zip(CRON_FIELDS.iter()) {
        for expression in text.split(',') {
            cron_range(expression, field)?;
        }
    }
    Ok(())
}
