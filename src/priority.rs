//! Urgency: a priority from 1 (life or safety at risk now) to 4 (routine).
//!
//! Pure rules applied by the stages after segmentation. The danger-word table is the one
//! documented in the README; a later model refines the rest.

use crate::event::Channel;

/// Words that mean life or property is in danger right now.
pub const DANGER_WORDS: &[&str] = &[
    "起火",
    "着火",
    "火灾",
    "爆炸",
    "坍塌",
    "塌陷",
    "被困",
    "溺水",
    "落水",
    "持刀",
    "砍人",
    "煤气泄漏",
    "燃气泄漏",
    "触电",
    "受伤",
    "流血",
    "死亡",
    "昏迷",
    "跳楼",
    "抢劫",
    "绑架",
];

/// Kinds of 12345 report that ask for action rather than information.
const ACTION_KINDS: &[&str] = &["投诉", "举报", "求助"];

/// The priority of one event.
///
/// | condition                                   | priority |
/// |---------------------------------------------|----------|
/// | a danger word in the text (any channel)     | 1        |
/// | a 110 call without danger words             | 2        |
/// | 12345 投诉 / 举报 / 求助                    | 3        |
/// | everything else                             | 4        |
pub fn priority(channel: Channel, report_kind: Option<&str>, text: &str) -> u8 {
    if DANGER_WORDS.iter().any(|w| text.contains(w)) {
        1
    } else if channel == Channel::Police110 {
        2
    } else if channel == Channel::Hotline12345
        && report_kind.is_some_and(|k| ACTION_KINDS.contains(&k))
    {
        3
    } else {
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_table() {
        let cases = [
            (
                Channel::Police110,
                Some("报警"),
                "小区三楼起火，有人被困",
                1,
            ),
            (Channel::Weibo, None, "路面坍塌了，大家绕行", 1),
            (Channel::Police110, Some("报警"), "楼下有人吵架", 2),
            (Channel::Hotline12345, Some("投诉"), "工地夜间施工噪音", 3),
            (Channel::Hotline12345, Some("咨询"), "社保怎么转移", 4),
            (Channel::Wechat, None, "路灯不亮", 4),
        ];
        for (channel, kind, text, expected) in cases {
            assert_eq!(
                priority(channel, kind, text),
                expected,
                "{channel} {kind:?} {text}"
            );
        }
    }
}
