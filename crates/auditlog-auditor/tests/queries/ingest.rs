//! HTTP ingest of events that arrive without an id.

use super::*;

#[tokio::test]
async fn retrying_an_ingest_of_events_without_ids_stores_them_once_under_the_same_ids() {
    let app = App::spawn().await;
    // The prototype's format: no id, no timestamp. Two identical lines are two
    // events (their positions differ); the whole body sent again is a retry.
    let line = r#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"reports","targetId":"retried"}"#;
    let body = format!("{line}\n{line}\n");
    let send = || async {
        let response = app
            .client
            .post(format!("{}/api/data-events", app.base))
            .bearer_auth(app.admin())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()
    };

    let first = send().await;
    let retry = send().await;

    assert_eq!(first["meta"]["stored"], 2, "{first}");
    assert_eq!(retry["meta"]["stored"], 0, "{retry}");
    assert_eq!(retry["meta"]["duplicates"], 2, "{retry}");
    assert_eq!(ids_of(&first), ids_of(&retry));
    let stored = app
        .ids("/api/data-events?filter[targetType]=reports&filter[targetId]=retried")
        .await;
    assert_eq!(stored.len(), 2);
}
