//! A small Wagtail-shaped site whose people are made
//! up, deterministically, from short word lists (no real personal data), for
//! the `scan` tests (which snapshot its coverage table).
//!
//! Production gets the full site; staging an older, smaller copy plus three
//! QA accounts that exist only there, with their group memberships.

use tokio_postgres::{Client, NoTls};

/// The tables of both databases: Django's users, Wagtail's sites, pages and
/// form submissions, and two tables without personal data.
const SCHEMA: &str = "
CREATE TABLE auth_user (
    id           serial PRIMARY KEY,
    username     varchar(150) NOT NULL UNIQUE,
    email        varchar(254) NOT NULL,
    first_name   varchar(150) NOT NULL,
    last_name    varchar(150) NOT NULL,
    password     varchar(128) NOT NULL,
    is_staff     boolean NOT NULL DEFAULT false,
    is_superuser boolean NOT NULL DEFAULT false,
    is_active    boolean NOT NULL DEFAULT true,
    date_joined  timestamptz NOT NULL,
    last_login   timestamptz
);
CREATE TABLE auth_group (
    id   serial PRIMARY KEY,
    name varchar(150) NOT NULL UNIQUE
);
CREATE TABLE auth_user_groups (
    id       serial PRIMARY KEY,
    user_id  integer NOT NULL REFERENCES auth_user (id),
    group_id integer NOT NULL REFERENCES auth_group (id),
    UNIQUE (user_id, group_id)
);
INSERT INTO auth_group (name) VALUES ('Editors'), ('Moderators');
CREATE TABLE wagtailcore_site (
    id              serial PRIMARY KEY,
    hostname        varchar(255) NOT NULL,
    port            integer NOT NULL DEFAULT 443,
    site_name       varchar(255) NOT NULL,
    is_default_site boolean NOT NULL DEFAULT false
);
CREATE TABLE wagtailcore_page (
    id                 serial PRIMARY KEY,
    title              varchar(255) NOT NULL,
    slug               varchar(255) NOT NULL,
    url_path           text NOT NULL,
    live               boolean NOT NULL DEFAULT true,
    body               text NOT NULL,
    owner_id           integer REFERENCES auth_user (id),
    first_published_at timestamptz
);
CREATE TABLE wagtailforms_formsubmission (
    id          serial PRIMARY KEY,
    page_id     integer NOT NULL REFERENCES wagtailcore_page (id),
    form_data   jsonb NOT NULL,
    submit_time timestamptz NOT NULL
);
CREATE TABLE blog_category (
    id   serial PRIMARY KEY,
    name varchar(80) NOT NULL,
    slug varchar(80) NOT NULL UNIQUE
);
CREATE TABLE django_migrations (
    id      serial PRIMARY KEY,
    app     varchar(255) NOT NULL,
    name    varchar(255) NOT NULL,
    applied timestamptz NOT NULL
);
";

const FIRST_NAMES: &[&str] = &[
    "Ada", "Bram", "Chidi", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ines", "Jonas", "Kemi",
    "Luca", "Mei", "Nils", "Oona", "Pavel", "Quinn", "Rosa", "Sami", "Tess",
];

/// Invented surnames.
const LAST_NAMES: &[&str] = &[
    "Applewood",
    "Brightwater",
    "Copperfield",
    "Dunmore",
    "Elderbrook",
    "Fernhill",
    "Greystone",
    "Hollowell",
    "Ironside",
    "Juniper",
    "Kettleby",
    "Larkspur",
    "Merriweather",
    "Northcott",
    "Oakhurst",
    "Pennywhistle",
    "Quarrington",
    "Ravensdale",
    "Silverton",
    "Thistlewood",
];

/// Reserved for documentation (RFC 2606): these addresses reach nobody.
const DOMAINS: &[&str] = &["example.net", "example.org", "mail.example"];

const CATEGORIES: &[&str] = &["News", "Events", "Research", "Community", "Press"];

const MIGRATIONS: &[(&str, &str)] = &[
    ("auth", "0001_initial"),
    ("wagtailcore", "0001_initial"),
    ("wagtailcore", "0078_referenceindex"),
    ("wagtailforms", "0001_initial"),
    ("blog", "0001_initial"),
    ("blog", "0002_category_slug"),
];

/// How much of the site a database holds.
struct Site {
    hostname: &'static str,
    users: usize,
    news_pages: usize,
    submissions: usize,
    migrations: usize,
    /// Staff logins that exist only in this database: username, e-mail,
    /// an explicit id (else the next one), groups.
    extra_staff: &'static [QaAccount],
}

type QaAccount = (
    &'static str,
    &'static str,
    Option<i32>,
    &'static [&'static str],
);

/// The QA team's logins on staging: `qa.tester` takes the next id, which
/// production also uses (so the reset gives it a new one).
const QA_ACCOUNTS: &[QaAccount] = &[
    ("qa.tester", "qa.tester@example.com", None, &["Editors"]),
    (
        "qa.editor",
        "qa.editor@example.com",
        Some(900),
        &["Editors", "Moderators"],
    ),
    (
        "qa.moderator",
        "qa.moderator@example.com",
        Some(901),
        &["Moderators"],
    ),
];

pub async fn production(url: &str) -> Result<(), tokio_postgres::Error> {
    let site = Site {
        hostname: "www.example.org",
        users: 200,
        news_pages: 12,
        submissions: 60,
        migrations: MIGRATIONS.len(),
        extra_staff: &[],
    };
    seed(url, &site).await
}

/// An older copy: fewer rows, a migration behind, and the QA team's logins.
pub async fn staging(url: &str) -> Result<(), tokio_postgres::Error> {
    let site = Site {
        hostname: "staging.example.org",
        users: 120,
        news_pages: 7,
        submissions: 25,
        migrations: MIGRATIONS.len() - 1,
        extra_staff: QA_ACCOUNTS,
    };
    seed(url, &site).await
}

/// One line about a database: users, staff, a few e-mails, the site host.
pub async fn summary(url: &str) -> Result<String, tokio_postgres::Error> {
    let client = connect(url).await?;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM auth_user),
                    (SELECT count(*) FROM auth_user WHERE is_staff),
                    (SELECT string_agg(email, ', ' ORDER BY id)
                       FROM (SELECT id, email FROM auth_user WHERE NOT is_staff
                              ORDER BY id LIMIT 2) sample),
                    (SELECT count(*) FROM wagtailforms_formsubmission),
                    (SELECT string_agg(hostname, ', ') FROM wagtailcore_site)",
            &[],
        )
        .await?;
    Ok(format!(
        "{} users ({} staff; e.g. {}), {} form submissions, site {}",
        row.get::<_, i64>(0),
        row.get::<_, i64>(1),
        row.get::<_, Option<String>>(2).unwrap_or_default(),
        row.get::<_, i64>(3),
        row.get::<_, Option<String>>(4).unwrap_or_default(),
    ))
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn seed(url: &str, site: &Site) -> Result<(), tokio_postgres::Error> {
    let mut client = connect(url).await?;
    client.batch_execute(SCHEMA).await?;
    let tx = client.transaction().await?;

    let user = tx
        .prepare(
            "INSERT INTO auth_user (username, email, first_name, last_name, password, is_staff,
                                    is_superuser, date_joined, last_login)
             VALUES ($1, $2, $3, $4, 'pbkdf2_sha256$600000$demo$notarealhash', $5, $6,
                     timestamptz '2021-01-04 09:00+00' + $7::int * interval '31 hours',
                     timestamptz '2024-06-01 12:00+00' + $7::int * interval '5 hours')",
        )
        .await?;
    for i in 0..site.users {
        let (first, last) = name(i);
        let username = format!("{}.{}{i}", first.to_lowercase(), last.to_lowercase());
        let email = format!("{username}@{}", DOMAINS[i % DOMAINS.len()]);
        let staff = i < 3;
        let (superuser, n) = (i == 0, i32::try_from(i).unwrap_or(i32::MAX));
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&username, &email, &first, &last, &staff, &superuser, &n];
        tx.execute(&user, &params).await?;
    }
    for (username, email, id, groups) in site.extra_staff {
        let n = i32::try_from(site.users).unwrap_or(i32::MAX);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [username, email, &"QA", &"Tester", &true, &false, &n];
        tx.execute(&user, &params).await?;
        if let Some(id) = id {
            tx.execute(
                "UPDATE auth_user SET id = $1 WHERE username = $2",
                &[id, username],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO auth_user_groups (user_id, group_id)
             SELECT u.id, g.id FROM auth_user u, auth_group g
             WHERE u.username = $1 AND g.name = ANY($2)",
            &[username, groups],
        )
        .await?;
    }

    tx.execute(
        "INSERT INTO wagtailcore_site (hostname, port, site_name, is_default_site)
         VALUES ($1, 443, 'Example Trust', true)",
        &[&site.hostname],
    )
    .await?;

    let page = tx
        .prepare(
            "INSERT INTO wagtailcore_page (title, slug, url_path, body, owner_id, first_published_at)
             VALUES ($1, $2, $3, $4, 1, timestamptz '2022-03-01 10:00+00' + $5::int * interval '9 days')
             RETURNING id",
        )
        .await?;
    let base = format!("https://{}", site.hostname);
    let home_body = format!(
        "<p>Welcome to the Example Trust. Read the <a href=\"{base}/news/\">latest news</a> \
         or <a href=\"{base}/contact/\">get in touch</a>.</p>"
    );
    tx.execute(&page, &[&"Home", &"home", &"/home/", &home_body, &0i32])
        .await?;
    for i in 1..=site.news_pages {
        let n = i32::try_from(i).unwrap_or(i32::MAX);
        let body = format!(
            "<h2>Update {i}</h2><p>Our {} team has news. See \
             <a href=\"{base}/news/update-{i}/\">the full story</a> and \
             <a href=\"{base}/events/\">upcoming events</a>.</p>",
            CATEGORIES[i % CATEGORIES.len()].to_lowercase(),
        );
        let slug = format!("update-{i}");
        let path = format!("/home/news/{slug}/");
        tx.execute(&page, &[&format!("Update {i}"), &slug, &path, &body, &n])
            .await?;
    }
    let contact_body = format!(
        "<p>Write to us with the form below, or see <a href=\"{base}/about/\">who we are</a>.</p>"
    );
    let contact: i32 = tx
        .query_one(
            &page,
            &[
                &"Contact",
                &"contact",
                &"/home/contact/",
                &contact_body,
                &1i32,
            ],
        )
        .await?
        .get(0);

    let submission = tx
        .prepare(
            "INSERT INTO wagtailforms_formsubmission (page_id, form_data, submit_time)
             VALUES ($1, jsonb_build_object('name', $2::text, 'email', $3::text,
                                            'subject', $4::text, 'newsletter', $5::bool),
                     timestamptz '2023-01-02 08:00+00' + $6::int * interval '2 days 3 hours')",
        )
        .await?;
    for i in 0..site.submissions {
        // Visitors are people from the user list, and some who never signed up.
        let (first, last) = name(i * 3 + 7);
        let full_name = format!("{first} {last}");
        let email = format!(
            "{}.{}@{}",
            first.to_lowercase(),
            last.to_lowercase(),
            DOMAINS[(i + 1) % DOMAINS.len()]
        );
        let subject = format!("Question about {}", CATEGORIES[i % CATEGORIES.len()]);
        let n = i32::try_from(i).unwrap_or(i32::MAX);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&contact, &full_name, &email, &subject, &(i % 2 == 0), &n];
        tx.execute(&submission, &params).await?;
    }

    for name in CATEGORIES {
        tx.execute(
            "INSERT INTO blog_category (name, slug) VALUES ($1::text, lower($1::text))",
            &[name],
        )
        .await?;
    }
    for (app, name) in &MIGRATIONS[..site.migrations] {
        tx.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ($1, $2, now())",
            &[app, name],
        )
        .await?;
    }
    tx.commit().await
}

/// The `i`-th made-up person: every first name meets every surname before
/// any pair repeats.
fn name(i: usize) -> (&'static str, &'static str) {
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    let last = LAST_NAMES[(i / FIRST_NAMES.len() + i) % LAST_NAMES.len()];
    (first, last)
}
