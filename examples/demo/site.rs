//! The demo's site: a new Wagtail 8 project's real schema with made-up
//! people (tests/fixtures/presets/wagtail.sql, as `wagtail start`,
//! `migrate` and the ORM wrote it), so the shipped workflow's
//! `preset:wagtail` binds to it as it would to yours.
//!
//! Production serves www.example.org. Staging, staging.example.org, is the
//! same site plus three QA logins that exist only there, in the Editors and
//! Moderators groups.

use tokio_postgres::{Client, NoTls};

const WAGTAIL: &str = include_str!("../../tests/fixtures/presets/wagtail.sql");

// pg_dump's text empties `search_path` for the session it runs in.
const PRODUCTION: &str = "
SET search_path = public;
UPDATE wagtailcore_site SET hostname = 'www.example.org', port = 443, site_name = 'Example';
";

/// Staging: its own host and its QA logins.
const STAGING: &str = "
SET search_path = public;
UPDATE wagtailcore_site SET hostname = 'staging.example.org', port = 443, site_name = 'Example (staging)';
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
VALUES ('!', false, 'qa.tester', 'Quinn', 'Tester', 'qa.tester@example.com', true, true, now()),
       ('!', false, 'qa.editor', 'Eddie', 'Editor', 'qa.editor@example.com', true, true, now()),
       ('!', false, 'qa.moderator', 'Mo', 'Derator', 'qa.moderator@example.com', true, true, now());
INSERT INTO auth_user_groups (user_id, group_id)
SELECT u.id, g.id FROM auth_user u, auth_group g
 WHERE (u.username IN ('qa.tester', 'qa.editor') AND g.name = 'Editors')
    OR (u.username IN ('qa.tester', 'qa.moderator') AND g.name = 'Moderators');
";

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

pub async fn production(url: &str) -> Result<(), tokio_postgres::Error> {
    let client = connect(url).await?;
    client.batch_execute(WAGTAIL).await?;
    client.batch_execute(PRODUCTION).await
}

pub async fn staging(url: &str) -> Result<(), tokio_postgres::Error> {
    let client = connect(url).await?;
    client.batch_execute(WAGTAIL).await?;
    client.batch_execute(STAGING).await
}

/// Production's people's e-mail addresses: none may reach staging.
pub async fn emails(url: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let client = connect(url).await?;
    let rows = client
        .query(
            "SELECT email FROM auth_user WHERE email <> '' \
             UNION SELECT form_data::jsonb->>'email_address' FROM wagtailforms_formsubmission \
             WHERE form_data::jsonb ? 'email_address'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How many of `addresses` appear anywhere in `url`'s text columns of
/// users and form submissions.
pub async fn found(url: &str, addresses: &[String]) -> Result<usize, tokio_postgres::Error> {
    let client = connect(url).await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM unnest($1::text[]) a \
             WHERE EXISTS (SELECT 1 FROM auth_user u WHERE u.email = a OR u.username = a) \
                OR EXISTS (SELECT 1 FROM wagtailforms_formsubmission f \
                           WHERE strpos(f.form_data::text, a) > 0)",
            &[&addresses],
        )
        .await?;
    Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// One line about a database: users, QA logins, pages, form submissions
/// and the site's host.
pub async fn summary(url: &str) -> Result<String, tokio_postgres::Error> {
    let client = connect(url).await?;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM auth_user), \
                    (SELECT count(*) FROM auth_user WHERE username LIKE 'qa.%'), \
                    (SELECT count(*) FROM wagtailcore_page), \
                    (SELECT count(*) FROM wagtailforms_formsubmission), \
                    (SELECT coalesce(string_agg(hostname, ', '), '') FROM wagtailcore_site)",
            &[],
        )
        .await?;
    let (users, qa, pages, forms, host): (i64, i64, i64, i64, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    Ok(format!(
        "{users} users ({qa} QA logins), {pages} pages, {forms} form submissions, site {host}"
    ))
}
