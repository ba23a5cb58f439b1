//! Decoding of the protobuf bodies kubectl sends for `create configmap|secret|deployment|
//! service|namespace` and `run`: the `k8s\0` envelope (`runtime.Unknown`) and a field-number
//! schema per kind that turns the wire format into the same JSON the API would accept.

use base64::Engine as _;
use bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};
use serde_json::{Map, Value};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// How one field is encoded and rendered in JSON.
#[derive(Clone, Copy)]
enum T {
    Str,
    /// Optional (pointer) string: kept even when empty.
    OptStr,
    Int,
    /// Optional (pointer) integer: kept even when zero (`replicas: 0`).
    OptInt,
    Bool,
    OptBool,
    Msg(&'static [F]),
    /// An embedded struct whose fields JSON inlines into the parent.
    Inline(&'static [F]),
    MapStr,
    MapBytes,
    /// map<string, Quantity>.
    MapQty,
    RepStr,
    RepMsg(&'static [F]),
    /// metav1.Time {seconds, nanos}.
    Time,
    /// intstr.IntOrString {type, intVal, strVal}.
    IntOrStr,
}

/// One field: number, JSON name, type.
struct F(u32, &'static str, T);

const TYPE_META: &[F] = &[F(1, "apiVersion", T::Str), F(2, "kind", T::Str)];

const OWNER_REF: &[F] = &[
    F(1, "kind", T::Str),
    F(3, "name", T::Str),
    F(4, "uid", T::Str),
    F(5, "apiVersion", T::Str),
    F(6, "controller", T::OptBool),
    F(7, "blockOwnerDeletion", T::OptBool),
];

const OBJECT_META: &[F] = &[
    F(1, "name", T::Str),
    F(2, "generateName", T::Str),
    F(3, "namespace", T::Str),
    F(5, "uid", T::Str),
    F(6, "resourceVersion", T::Str),
    F(7, "generation", T::Int),
    F(8, "creationTimestamp", T::Time),
    F(9, "deletionTimestamp", T::Time),
    F(10, "deletionGracePeriodSeconds", T::OptInt),
    F(11, "labels", T::MapStr),
    F(12, "annotations", T::MapStr),
    F(13, "ownerReferences", T::RepMsg(OWNER_REF)),
    F(14, "finalizers", T::RepStr),
];

const CONFIG_MAP: &[F] = &[
    F(1, "metadata", T::Msg(OBJECT_META)),
    F(2, "data", T::MapStr),
    F(3, "binaryData", T::MapBytes),
    F(4, "immutable", T::OptBool),
];

const SECRET: &[F] = &[
    F(1, "metadata", T::Msg(OBJECT_META)),
    F(2, "data", T::MapBytes),
    F(3, "type", T::Str),
    F(4, "stringData", T::MapStr),
    F(5, "immutable", T::OptBool),
];

const NAMESPACE: &[F] = &[
    F(1, "metadata", T::Msg(OBJECT_META)),
    F(2, "spec", T::Msg(&[F(1, "finalizers", T::RepStr)])),
];

const SERVICE_PORT: &[F] = &[
    F(1, "name", T::Str),
    F(2, "protocol", T::Str),
    F(3, "port", T::Int),
    F(4, "targetPort", T::IntOrStr),
    F(5, "nodePort", T::Int),
    F(6, "appProtocol", T::OptStr),
];

const SERVICE_SPEC: &[F] = &[
    F(1, "ports", T::RepMsg(SERVICE_PORT)),
    F(2, "selector", T::MapStr),
    F(3, "clusterIP", T::Str),
    F(4, "type", T::Str),
    F(5, "externalIPs", T::RepStr),
    F(7, "sessionAffinity", T::Str),
    F(8, "loadBalancerIP", T::Str),
    F(9, "loadBalancerSourceRanges", T::RepStr),
    F(10, "externalName", T::Str),
    F(11, "externalTrafficPolicy", T::Str),
    F(12, "healthCheckNodePort", T::Int),
    F(13, "publishNotReadyAddresses", T::Bool),
    F(17, "ipFamilyPolicy", T::OptStr),
    F(18, "clusterIPs", T::RepStr),
    F(19, "ipFamilies", T::RepStr),
    F(22, "internalTrafficPolicy", T::OptStr),
];

const SERVICE: &[F] = &[
    F(1, "metadata", T::Msg(OBJECT_META)),
    F(2, "spec", T::Msg(SERVICE_SPEC)),
];

const CONTAINER_PORT: &[F] = &[
    F(1, "name", T::Str),
    F(2, "hostPort", T::Int),
    F(3, "containerPort", T::Int),
    F(4, "protocol", T::Str),
    F(5, "hostIP", T::Str),
];

const ENV_VAR: &[F] = &[F(1, "name", T::Str), F(2, "value", T::Str)];

const RESOURCES: &[F] = &[F(1, "limits", T::MapQty), F(2, "requests", T::MapQty)];

const VOLUME_MOUNT: &[F] = &[
    F(1, "name", T::Str),
    F(2, "readOnly", T::Bool),
    F(3, "mountPath", T::Str),
    F(4, "subPath", T::Str),
];

const CONTAINER: &[F] = &[
    F(1, "name", T::Str),
    F(2, "image", T::Str),
    F(3, "command", T::RepStr),
    F(4, "args", T::RepStr),
    F(5, "workingDir", T::Str),
    F(6, "ports", T::RepMsg(CONTAINER_PORT)),
    F(7, "env", T::RepMsg(ENV_VAR)),
    F(8, "resources", T::Msg(RESOURCES)),
    F(9, "volumeMounts", T::RepMsg(VOLUME_MOUNT)),
    F(13, "terminationMessagePath", T::Str),
    F(14, "imagePullPolicy", T::Str),
    F(16, "stdin", T::Bool),
    F(17, "stdinOnce", T::Bool),
    F(18, "tty", T::Bool),
    F(20, "terminationMessagePolicy", T::Str),
];

const TOLERATION: &[F] = &[
    F(1, "key", T::Str),
    F(2, "operator", T::Str),
    F(3, "value", T::Str),
    F(4, "effect", T::Str),
    F(5, "tolerationSeconds", T::OptInt),
];

const HOST_PATH: &[F] = &[F(1, "path", T::Str), F(2, "type", T::OptStr)];
const EMPTY_DIR: &[F] = &[F(1, "medium", T::Str)];
const SECRET_VOLUME: &[F] = &[F(1, "secretName", T::Str)];
const CONFIG_MAP_VOLUME: &[F] = &[F(1, "", T::Inline(&[F(1, "name", T::Str)]))];
const VOLUME_SOURCE: &[F] = &[
    F(1, "hostPath", T::Msg(HOST_PATH)),
    F(2, "emptyDir", T::Msg(EMPTY_DIR)),
    F(6, "secret", T::Msg(SECRET_VOLUME)),
    F(19, "configMap", T::Msg(CONFIG_MAP_VOLUME)),
];
const VOLUME: &[F] = &[F(1, "name", T::Str), F(2, "", T::Inline(VOLUME_SOURCE))];

const POD_SPEC: &[F] = &[
    F(1, "volumes", T::RepMsg(VOLUME)),
    F(2, "containers", T::RepMsg(CONTAINER)),
    F(3, "restartPolicy", T::Str),
    F(4, "terminationGracePeriodSeconds", T::OptInt),
    F(5, "activeDeadlineSeconds", T::OptInt),
    F(6, "dnsPolicy", T::Str),
    F(7, "nodeSelector", T::MapStr),
    F(8, "serviceAccountName", T::Str),
    F(10, "nodeName", T::Str),
    F(11, "hostNetwork", T::Bool),
    F(12, "hostPID", T::Bool),
    F(13, "hostIPC", T::Bool),
    F(15, "imagePullSecrets", T::RepMsg(&[F(1, "name", T::Str)])),
    F(16, "hostname", T::Str),
    F(17, "subdomain", T::Str),
    F(19, "schedulerName", T::Str),
    F(20, "initContainers", T::RepMsg(CONTAINER)),
    F(22, "tolerations", T::RepMsg(TOLERATION)),
    F(24, "priorityClassName", T::Str),
    F(25, "priority", T::OptInt),
];

const POD_TEMPLATE_SPEC: &[F] = &[
    F(1, "metadata", T::Msg(OBJECT_META)),
    F(2, "spec", T::Msg(POD_SPEC)),
];

const POD: &[F] = &[
    F(1, "metadata", T::Msg(OBJECT_META)),
    F(2, "spec", T::Msg(POD_SPEC)),
];

const LABEL_SELECTOR: &[F] = &[
    F(1, "matchLabels", T::MapStr),
    F(
        2,
        "matchExpressions",
        T::RepMsg(&[
            F(1, "key", T::Str),
            F(2, "operator", T::Str),
            F(3, "values", T::RepStr),
        ]),
    ),
];

const DEPLOYMENT_STRATEGY: &[F] = &[
    F(1, "type", T::Str),
    F(
        2,
        "rollingUpdate",
        T::Msg(&[
            F(1, "maxUnavailable", T::IntOrStr),
            F(2, "maxSurge", T::IntOrStr),
        ]),
    ),
];

const DEPLOYMENT_SPEC: &[F] = &[
    F(1, "replicas", T::OptInt),
    F(2, "selector", T::Msg(LABEL_SELECTOR)),
    F(3, "template", T::Msg(POD_TEMPLATE_SPEC)),
    F(4, "strategy", T::Msg(DEPLOYMENT_STRATEGY)),
    F(5, "minReadySeconds", T::Int),
    F(6, "revisionHistoryLimit", T::OptInt),
    F(7, "paused", T::Bool),
    F(9, "progressDeadlineSeconds", T::OptInt),
];

const DEPLOYMENT: &[F] = &[
    F(1, "metadata", T::Msg(OBJECT_META)),
    F(2, "spec", T::Msg(DEPLOYMENT_SPEC)),
];

const REPLICA_SET: &[F] = &[
    F(1, "metadata", T::Msg(OBJECT_META)),
    F(
        2,
        "spec",
        T::Msg(&[
            F(1, "replicas", T::OptInt),
            F(2, "selector", T::Msg(LABEL_SELECTOR)),
            F(3, "template", T::Msg(POD_TEMPLATE_SPEC)),
            F(4, "minReadySeconds", T::Int),
        ]),
    ),
];

fn schema_for(kind: &str) -> Option<&'static [F]> {
    Some(match kind {
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        "Namespace" => NAMESPACE,
        "Service" => SERVICE,
        "Pod" => POD,
        "Deployment" => DEPLOYMENT,
        "ReplicaSet" => REPLICA_SET,
        _ => return None,
    })
}

/// Decodes a `k8s\0`-framed protobuf body into a JSON object (with apiVersion and kind).
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let Some(mut buf) = body.strip_prefix(b"k8s\0") else {
        return Err("protobuf body does not start with the k8s\\0 magic".into());
    };
    let mut type_meta = Map::new();
    let mut raw: &[u8] = &[];
    while buf.has_remaining() {
        let (num, wt) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        match (num, wt) {
            (1, WireType::LengthDelimited) => {
                let b = take(&mut buf)?;
                type_meta = decode_msg(b, TYPE_META)?;
            }
            (2, WireType::LengthDelimited) => raw = take(&mut buf)?,
            _ => skip(&mut buf, wt)?,
        }
    }
    let kind = type_meta
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let schema = schema_for(&kind).ok_or_else(|| {
        format!("this kube-apiserver stand-in cannot decode protobuf for kind {kind:?}; send JSON (e.g. kubectl create -f)")
    })?;
    let mut obj = Map::new();
    obj.insert(
        "apiVersion".into(),
        type_meta.get("apiVersion").cloned().unwrap_or(Value::Null),
    );
    obj.insert("kind".into(), Value::String(kind));
    obj.extend(decode_msg(raw, schema)?);
    Ok(Value::Object(obj))
}

fn take<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = decode_varint(buf).map_err(|e| e.to_string())? as usize;
    if len > buf.len() {
        return Err("protobuf: length exceeds the message".into());
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

fn skip(buf: &mut &[u8], wt: WireType) -> Result<(), String> {
    let n = match wt {
        WireType::Varint => {
            decode_varint(buf).map_err(|e| e.to_string())?;
            0
        }
        WireType::LengthDelimited => {
            take(buf)?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        _ => return Err("protobuf: groups are not supported".into()),
    };
    if n > buf.len() {
        return Err("protobuf: truncated field".into());
    }
    buf.advance(n);
    Ok(())
}

fn decode_msg(mut buf: &[u8], schema: &[F]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    while buf.has_remaining() {
        let (num, wt) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        let Some(F(_, name, t)) = schema.iter().find(|f| f.0 == num) else {
            skip(&mut buf, wt)?;
            continue;
        };
        let name = name.to_string();
        match *t {
            T::Int | T::OptInt | T::Bool | T::OptBool => {
                if wt != WireType::Varint {
                    skip(&mut buf, wt)?;
                    continue;
                }
                let v = decode_varint(&mut buf).map_err(|e| e.to_string())?;
                match *t {
                    T::Int if v != 0 => {
                        out.insert(name, Value::from(v as i64));
                    }
                    T::OptInt => {
                        out.insert(name, Value::from(v as i64));
                    }
                    T::Bool if v != 0 => {
                        out.insert(name, Value::Bool(true));
                    }
                    T::OptBool => {
                        out.insert(name, Value::Bool(v != 0));
                    }
                    _ => {}
                }
            }
            _ if wt != WireType::LengthDelimited => skip(&mut buf, wt)?,
            T::Str | T::OptStr => {
                let s = String::from_utf8_lossy(take(&mut buf)?).into_owned();
                if !s.is_empty() || matches!(t, T::OptStr) {
                    out.insert(name, Value::String(s));
                }
            }
            T::Msg(s) => {
                let m = decode_msg(take(&mut buf)?, s)?;
                if !m.is_empty() {
                    out.insert(name, Value::Object(m));
                }
            }
            T::Inline(s) => out.extend(decode_msg(take(&mut buf)?, s)?),
            T::MapStr | T::MapBytes | T::MapQty => {
                let (k, v) = map_entry(take(&mut buf)?, *t)?;
                let e = out.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = e {
                    m.insert(k, v);
                }
            }
            T::RepStr => {
                let s = String::from_utf8_lossy(take(&mut buf)?).into_owned();
                push(&mut out, name, Value::String(s));
            }
            T::RepMsg(s) => {
                let m = decode_msg(take(&mut buf)?, s)?;
                push(&mut out, name, Value::Object(m));
            }
            T::Time => {
                let m = decode_msg(take(&mut buf)?, &[F(1, "s", T::Int), F(2, "n", T::Int)])?;
                if let Some(secs) = m.get("s").and_then(Value::as_i64) {
                    if let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) {
                        out.insert(name, Value::String(crate::util::format_time(t)));
                    }
                }
            }
            T::IntOrStr => {
                let m = decode_msg(
                    take(&mut buf)?,
                    &[F(1, "t", T::Int), F(2, "i", T::Int), F(3, "s", T::Str)],
                )?;
                let v = if m.get("t").and_then(Value::as_i64) == Some(1) {
                    m.get("s").cloned().unwrap_or(Value::String(String::new()))
                } else {
                    m.get("i").cloned().unwrap_or(Value::from(0))
                };
                out.insert(name, v);
            }
        }
    }
    Ok(out)
}

fn push(out: &mut Map<String, Value>, name: String, v: Value) {
    let e = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = e {
        a.push(v);
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn map_entry(mut buf: &[u8], t: T) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut val = Value::String(String::new());
    while buf.has_remaining() {
        let (num, wt) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        if wt != WireType::LengthDelimited {
            skip(&mut buf, wt)?;
            continue;
        }
        let b = take(&mut buf)?;
        match num {
            1 => key = String::from_utf8_lossy(b).into_owned(),
            2 => {
                val = match t {
                    T::MapBytes => Value::String(b64(b)),
                    T::MapQty => decode_msg(b, &[F(1, "q", T::Str)])?
                        .remove("q")
                        .unwrap_or(Value::String(String::new())),
                    _ => Value::String(String::from_utf8_lossy(b).into_owned()),
                }
            }
            _ => {}
        }
    }
    Ok((key, val))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, body.len() as u8];
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn configmap_from_kubectl_create() {
        let meta = ld(1, &[ld(1, b"t"), ld(3, b"")].concat());
        let data = ld(2, &[ld(1, b"a"), ld(2, b"b")].concat());
        let raw = [meta, data].concat();
        let tm = ld(1, &[ld(1, b"v1"), ld(2, b"ConfigMap")].concat());
        let body = [b"k8s\0".to_vec(), tm, ld(2, &raw)].concat();
        let v = decode(&body).expect("decodes");
        assert_eq!(
            v,
            serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"},"data":{"a":"b"}})
        );
    }
}
