//! JSON documents bent out of shape, for fuzzing parsers from a valid sample.

use serde_json::Value;

/// Replaces the value found by following `path` in `node` (each step picks a member or an element,
/// modulo the count) with `replacement`; a path that runs past a leaf replaces that leaf.
pub fn mutate(node: &mut Value, path: &[usize], replacement: Value) {
    let Some((step, rest)) = path.split_first() else {
        *node = replacement;
        return;
    };
    match node {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).cloned().expect("a key");
            mutate(map.get_mut(&key).expect("the key"), rest, replacement);
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[step % len], rest, replacement);
        }
        _ => *node = replacement,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_the_path_modulo_the_counts() {
        let mut doc = json!({"a": [1, 2, {"b": true}]});
        mutate(&mut doc, &[0, 5, 0], json!("x"));
        assert_eq!(doc, json!({"a": [1, 2, {"b": "x"}]}));
        mutate(&mut doc, &[0, 0, 7, 7], json!(null));
        assert_eq!(doc, json!({"a": [null, 2, {"b": "x"}]}));
        mutate(&mut doc, &[], json!(3));
        assert_eq!(doc, json!(3));
    }
}
