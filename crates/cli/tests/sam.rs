//! The SAM template parser against fixture templates, as `esb build` uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use esb_cli::sam::{
    self, Api, ApiProtocol, App, Architecture, Bucket, Code, Cors, Database, Event, Function,
    LifecycleRule, LoadOptions, Package, PayloadFormat,
};

fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sam")
        .join(relative)
}

/// The path as a user would type it, relative to the crate (the working
/// directory of integration tests), so messages show it as given.
fn relative(relative: &str) -> PathBuf {
    Path::new("tests/fixtures/sam").join(relative)
}

fn options(overrides: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        overrides: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        region: "eu-central-1".to_owned(),
        stack_name: "shop".to_owned(),
        ..LoadOptions::default()
    }
}

fn load(relative_path: &str, overrides: &[(&str, &str)]) -> App {
    sam::load(&fixture(relative_path), &options(overrides))
        .unwrap_or_else(|e| panic!("{relative_path} should load: {e}"))
}

fn error(relative_path: &str, overrides: &[(&str, &str)]) -> String {
    match sam::load(&relative(relative_path), &options(overrides)) {
        Ok(_) => panic!("{relative_path} should not load"),
        Err(e) => e.to_string(),
    }
}

fn function<'a>(app: &'a App, id: &str) -> &'a Function {
    app.functions
        .iter()
        .find(|f| f.logical_id == id)
        .unwrap_or_else(|| panic!("no function {id}"))
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn warnings(app: &App) -> Vec<String> {
    app.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn full_template_resolves_functions() {
    let app = load("full/template.yaml", &[]);
    let dir = fixture("full");
    let ids: Vec<_> = app
        .functions
        .iter()
        .map(|f| f.logical_id.as_str())
        .collect();
    // ProdOnlyFunction's condition is false with the default Stage.
    assert_eq!(
        ids,
        [
            "OrdersFunction",
            "WorkerFunction",
            "BootstrapFunction",
            "InlineFunction",
            "ImageFunction"
        ]
    );

    let shared = sam::Layer {
        logical_id: "SharedLayer".into(),
        name: "shop-shared".into(),
        content: Code::Dir(dir.join("layers/shared")),
        compatible_runtimes: vec!["python3.12".into(), "python3.11".into()],
        build_method: Some("python3.12".into()),
    };
    let orders = function(&app, "OrdersFunction");
    assert_eq!(
        orders,
        &Function {
            logical_id: "OrdersFunction".into(),
            name: "shop-orders-dev".into(),
            package: Package::Zip {
                runtime: "python3.12".into(),
                handler: "app.handler".into(),
                code: Code::Dir(dir.join("src/orders")),
                // The Globals layer; the ARN layer is skipped with a warning.
                layers: vec![shared.clone()],
            },
            architecture: Architecture::X86_64,
            environment: env(&[
                ("ACCOUNT", "aws:eu-central-1:000000000000"),
                ("BUCKET", "shop-uploads-dev"),
                ("DATABASE_HOST", "database"),
                ("DATABASE_ID", "OrdersCluster"),
                ("DATABASE_PORT", "5432"),
                ("DEV_ONLY", "yes"),
                ("ENCODED", "aGVsbG8="),
                ("FIRST_ORIGIN", "https://a.example"),
                ("LITERAL", "${NotAVariable}"),
                ("LOG_LEVEL", "TRACE"),
                ("LONG_FORM", "dev-eu-central-1"),
                ("ORIGINS", "https://a.example,https://b.example"),
                ("RETRIES", "3"),
                ("SECOND_HOST", "b.example"),
                ("STAGE", "dev"),
                ("TABLE", "OrdersTable"),
                ("UPLOADS_ARN", "arn:aws:s3:::shop-uploads-dev"),
                (
                    "UPLOADS_URL",
                    "https://shop-uploads-dev.s3.eu-central-1.amazonaws.com/dev"
                ),
                ("VERBOSE", "false"),
                (
                    "WORKER_ARN",
                    "arn:aws:lambda:eu-central-1:000000000000:function:WorkerFunction"
                ),
            ]),
            timeout_seconds: 15,
            memory_mb: 256,
            reserved_concurrency: Some(10),
            provisioned_concurrency: Some(2),
            events: vec![
                Event::Api {
                    name: "ListOrders".into(),
                    api: "OrdersApi".into(),
                    path: "/orders".into(),
                    method: "GET".into(),
                    auth_none: false,
                    api_key_required: true,
                },
                Event::Api {
                    name: "Health".into(),
                    api: "OrdersApi".into(),
                    path: "/health".into(),
                    method: "GET".into(),
                    auth_none: true,
                    api_key_required: false,
                },
                Event::Api {
                    name: "CreateOrder".into(),
                    api: "ServerlessRestApi".into(),
                    path: "/orders".into(),
                    method: "POST".into(),
                    auth_none: false,
                    api_key_required: false,
                },
                Event::HttpApi {
                    name: "GetOrder".into(),
                    api: "ServerlessHttpApi".into(),
                    path: "/orders/{id}".into(),
                    method: "GET".into(),
                    auth_none: true,
                    payload_format: PayloadFormat::V2,
                },
                Event::HttpApi {
                    name: "Fallback".into(),
                    api: "ServerlessHttpApi".into(),
                    path: "/{proxy+}".into(),
                    method: "ANY".into(),
                    auth_none: false,
                    payload_format: PayloadFormat::V2,
                },
                Event::Schedule {
                    name: "Nightly".into(),
                    expression: "cron(0 3 * * ? *)".into(),
                    input: Some(r#"{"job": "cleanup"}"#.into()),
                    enabled: false,
                    timezone: None,
                },
            ],
        }
    );

    let worker = function(&app, "WorkerFunction");
    assert_eq!(
        worker.package,
        Package::Zip {
            runtime: "python3.11".into(),
            handler: "worker.main".into(),
            code: Code::Zip(dir.join("artifacts/worker.zip")),
            layers: vec![shared.clone()],
        }
    );
    assert_eq!(worker.architecture, Architecture::Arm64);
    assert_eq!((worker.timeout_seconds, worker.memory_mb), (10, 1024));
    assert_eq!(
        worker.environment,
        env(&[
            ("BUCKET", "shop-uploads-dev"),
            ("LOG_LEVEL", "DEBUG"),
            ("STAGE", "dev")
        ])
    );
    assert_eq!(
        worker.events,
        [Event::Schedule {
            name: "Every5".into(),
            expression: "rate(5 minutes)".into(),
            input: Some(r#"{"batch":10}"#.into()),
            enabled: true,
            timezone: Some("Europe/Berlin".into()),
        }]
    );

    let bootstrap = function(&app, "BootstrapFunction");
    assert_eq!(
        bootstrap.package,
        Package::Zip {
            runtime: "provided.al2023".into(),
            handler: "bootstrap".into(),
            code: Code::Dir(dir.join("src/bootstrap")),
            layers: vec![shared.clone()],
        }
    );
    assert_eq!(
        bootstrap.events,
        [Event::HttpApi {
            name: "Legacy".into(),
            api: "ServerlessHttpApi".into(),
            path: "/legacy/{proxy+}".into(),
            method: "ANY".into(),
            auth_none: false,
            payload_format: PayloadFormat::V1,
        }]
    );

    assert_eq!(
        function(&app, "InlineFunction").package,
        Package::Inline {
            runtime: "python3.12".into(),
            handler: "index.handler".into(),
            code: "def handler(event, context):\n    return {\"ok\": True}\n".into(),
            layers: vec![shared],
        }
    );
    assert_eq!(
        function(&app, "ImageFunction").package,
        Package::Image {
            dockerfile: dir.join("image/Dockerfile"),
            context: dir.join("image"),
            build_args: env(&[("PY", "3.12")]),
            target: None,
            command: vec!["app.handler".into()],
            entry_point: vec![],
            working_directory: None,
        }
    );
}

#[test]
fn full_template_resolves_apis_buckets_and_databases() {
    let app = load("full/template.yaml", &[]);
    let rest_cors = Cors {
        allow_origins: vec!["*".into()],
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_headers: vec!["Content-Type".into(), "Authorization".into()],
        expose_headers: vec![],
        max_age: Some(600),
        allow_credentials: false,
    };
    assert_eq!(
        app.apis,
        [
            Api {
                logical_id: "OrdersApi".into(),
                protocol: ApiProtocol::Rest,
                stage_name: "dev".into(),
                cors: Some(rest_cors.clone()),
            },
            Api {
                logical_id: "ServerlessRestApi".into(),
                protocol: ApiProtocol::Rest,
                stage_name: "Prod".into(),
                cors: Some(rest_cors),
            },
            Api {
                logical_id: "ServerlessHttpApi".into(),
                protocol: ApiProtocol::Http,
                stage_name: "$default".into(),
                cors: Some(Cors {
                    allow_origins: vec!["https://a.example".into(), "https://b.example".into()],
                    allow_methods: vec!["GET".into()],
                    allow_credentials: true,
                    ..Cors::default()
                }),
            },
        ]
    );
    assert_eq!(
        app.buckets,
        [
            Bucket {
                logical_id: "UploadsBucket".into(),
                name: "shop-uploads-dev".into(),
                lifecycle: vec![
                    LifecycleRule {
                        id: Some("expire-tmp".into()),
                        prefix: Some("tmp/".into()),
                        expiration_days: 1,
                        enabled: true,
                    },
                    LifecycleRule {
                        id: Some("expire-logs".into()),
                        prefix: Some("logs/".into()),
                        expiration_days: 7,
                        enabled: false,
                    },
                ],
            },
            Bucket {
                logical_id: "ReportsBucket".into(),
                name: "reportsbucket".into(),
                lifecycle: vec![],
            },
        ]
    );
    // The Aurora instance is part of its cluster: one database.
    assert_eq!(
        app.databases,
        [
            Database {
                logical_id: "OrdersCluster".into(),
                db_name: "orders".into(),
                user: "orders_admin".into(),
                password: Some("s3cret".into()),
            },
            Database {
                logical_id: "ReportsDb".into(),
                db_name: "reportsdb".into(),
                user: "app".into(),
                password: None,
            },
        ]
    );
}

#[test]
fn full_template_warns_about_what_esb_skips() {
    let app = load("full/template.yaml", &[]);
    let file = fixture("full/template.yaml");
    let file = file.display();
    assert_eq!(
        warnings(&app),
        [
            format!("{file}:43:9: layer SharedLayer lists CompatibleRuntimes python3.12, python3.11 but function BootstrapFunction uses provided.al2023"),
            format!("{file}:99:11: layer arn:aws:lambda:eu-central-1:017000801446:layer:AWSLambdaPowertoolsPythonV2:40 is not available in ESB; skipped"),
            format!("{file}:160:17: event Incoming of function OrdersFunction has type SQS, which ESB does not provide; skipped"),
            format!("{file}:225:7: property VersioningConfiguration of bucket UploadsBucket is not supported by ESB; ignored"),
            format!("{file}:238:13: lifecycle rule archive of bucket UploadsBucket has no ExpirationInDays; ESB only applies expiration rules, so it is skipped"),
            format!("{file}:268:3: DynamoDB tables are not provided by ESB; OrdersTable is skipped"),
            format!("{file}:279:3: AWS::SQS::Queue is not provided by ESB; OrdersQueue is skipped"),
        ]
    );
}

#[test]
fn overrides_change_parameters_conditions_and_mappings() {
    let app = load(
        "full/template.yaml",
        &[("Stage", "prod"), ("MemoryMb", "512")],
    );
    let orders = function(&app, "OrdersFunction");
    assert_eq!(orders.name, "shop-orders-prod");
    assert_eq!(orders.timeout_seconds, 30);
    assert_eq!(orders.memory_mb, 512);
    assert_eq!(orders.environment["STAGE"], "prod");
    assert_eq!(orders.environment["DEV_ONLY"], "no");
    assert_eq!(orders.environment["AUDIT"], "on");
    assert_eq!(
        function(&app, "WorkerFunction").environment["LOG_LEVEL"],
        "INFO"
    );
    // The condition now holds, so the function exists.
    assert_eq!(function(&app, "ProdOnlyFunction").name, "ProdOnlyFunction");
    assert_eq!(app.buckets[0].name, "shop-uploads-prod");
    assert_eq!(app.buckets[0].lifecycle[1].expiration_days, 30);
    assert_eq!(app.apis[0].stage_name, "prod");
    // Without the override the AUDIT variable is removed (AWS::NoValue).
    let dev = load("full/template.yaml", &[]);
    assert!(!function(&dev, "OrdersFunction")
        .environment
        .contains_key("AUDIT"));
}

#[test]
fn real_world_template_loads_with_warnings() {
    // aws-samples/aws-serverless-shopping-cart, backend/shoppingcart-service.yaml.
    let app = load(
        "shopping-cart/template.yaml",
        &[("AllowedOrigin", "https://shop.example")],
    );
    assert_eq!(app.functions.len(), 8);
    let list = function(&app, "ListCartFunction");
    assert_eq!(list.timeout_seconds, 5);
    assert_eq!(list.memory_mb, 2048);
    assert_eq!(
        list.environment,
        env(&[
            ("ALLOWED_ORIGIN", "https://shop.example"),
            ("LOG_LEVEL", "INFO"),
            ("POWERTOOLS_METRICS_NAMESPACE", "ecommerce-app"),
            ("POWERTOOLS_SERVICE_NAME", "shopping-cart"),
            ("TABLE_NAME", "DynamoDBShoppingCartTable"),
            (
                "USERPOOL_ID",
                "/serverless-shopping-cart-demo/auth/user-pool-id"
            ),
        ])
    );
    match &list.package {
        Package::Zip {
            runtime, layers, ..
        } => {
            assert_eq!(runtime, "python3.8");
            let names: Vec<_> = layers.iter().map(|l| l.logical_id.as_str()).collect();
            assert_eq!(names, ["UtilsLayer"]);
        }
        other => panic!("expected a zip package, got {other:?}"),
    }
    assert_eq!(
        function(&app, "MigrateCartFunction").environment["DELETE_FROM_CART_SQS_QUEUE"],
        "CartDeleteSQSQueue"
    );
    let routes: Vec<_> = app
        .functions
        .iter()
        .flat_map(|f| &f.events)
        .map(|e| match e {
            Event::Api {
                method,
                path,
                auth_none,
                ..
            } => format!("{method} {path} {auth_none}"),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(
        routes,
        [
            "GET /cart false",
            "POST /cart false",
            "PUT /cart/{product_id} false",
            "POST /cart/migrate false",
            "POST /cart/checkout false",
            "GET /cart/{product_id}/total false",
        ]
    );
    assert_eq!(
        app.apis[0].cors,
        Some(Cors {
            allow_origins: vec!["https://shop.example".into()],
            allow_methods: ["OPTIONS", "POST", "GET", "PUT"].map(String::from).to_vec(),
            allow_headers: [
                "Content-Type",
                "Authorization",
                "x-dynatrace",
                "traceparent",
                "tracestate",
                "x-dtc",
                "referer",
                "host",
                "x-forwarded-proto",
                "x-forwarded-for",
                "x-forwarded-port"
            ]
            .map(String::from)
            .to_vec(),
            expose_headers: vec![],
            max_age: None,
            allow_credentials: true,
        })
    );
    let warnings = warnings(&app);
    let file = fixture("shopping-cart/template.yaml");
    let file = file.display();
    for expected in [
        format!("{file}:11:14: parameter UserPoolArn is an SSM parameter; ESB has no SSM and uses the Default \"/serverless-shopping-cart-demo/auth/user-pool-arn\" as the value (set it with --parameter-overrides UserPoolArn=...)"),
        format!("{file}:52:9: layer arn:aws:lambda:eu-central-1:017000801446:layer:AWSLambdaPowertoolsPython:3 is not available in ESB; skipped"),
        format!("{file}:374:17: event RetrieveFromSQS of function DeleteFromCartFunction has type SQS, which ESB does not provide; skipped"),
        format!("{file}:405:3: DynamoDB tables are not provided by ESB; DynamoDBShoppingCartTable is skipped"),
        format!("{file}:108:3: AWS::IAM::Role is not provided by ESB; ListCartRole is skipped"),
    ] {
        assert!(warnings.contains(&expected), "missing {expected}\nin {warnings:#?}");
    }
    // The Globals layer warning is reported once, not once per function.
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("AWSLambdaPowertoolsPython"))
            .count(),
        1
    );
}

#[test]
fn json_templates_load() {
    let app = load("json/template.json", &[]);
    let hello = function(&app, "HelloFunction");
    assert_eq!(
        hello.environment,
        env(&[
            ("GREETING", "hello, eu-central-1"),
            (
                "SELF",
                "arn:aws:lambda:eu-central-1:000000000000:function:HelloFunction"
            ),
        ])
    );
    assert_eq!(
        hello.events,
        [Event::HttpApi {
            name: "Hello".into(),
            api: "Http".into(),
            path: "/hello".into(),
            method: "GET".into(),
            auth_none: true,
            payload_format: PayloadFormat::V2,
        }]
    );
    assert_eq!(app.apis[0].stage_name, "v1");
    assert_eq!(
        app.apis[0].cors.as_ref().map(|c| c.allow_origins.clone()),
        Some(vec!["*".to_owned()])
    );
}

#[test]
fn errors_name_file_line_and_column() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (
            "errors/malformed.yaml",
            &[],
            "9:14: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence at line 8)",
        ),
        (
            "errors/missing-code-uri.yaml",
            &[],
            "5:5: function HelloFunction has no CodeUri (set CodeUri, InlineCode or Globals.Function.CodeUri)",
        ),
        (
            "errors/unknown-runtime.yaml",
            &[],
            "11:16: runtime nodejs20.x is not supported by ESB (supported: python3.8, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023)",
        ),
        (
            "errors/unknown-ref.yaml",
            &[],
            "11:18: unknown reference OrdersTabel: not a parameter, pseudo parameter or resource of this template",
        ),
        (
            "errors/missing-parameter.yaml",
            &[],
            "6:3: parameter ApiKey has no Default and no value in --parameter-overrides",
        ),
        (
            "errors/bad-allowed-value.yaml",
            &[],
            "5:14: parameter Stage: \"staging\" is not one of the AllowedValues: dev, prod",
        ),
        (
            "errors/bad-allowed-value.yaml",
            &[("Stage", "qa")],
            "3:3: parameter Stage: \"qa\" (from --parameter-overrides) is not one of the AllowedValues: dev, prod",
        ),
        (
            "errors/unsupported-intrinsic.yaml",
            &[],
            "11:22: intrinsic function Fn::ImportValue is not supported by ESB (it needs an AWS account)",
        ),
        (
            "errors/unknown-attribute.yaml",
            &[],
            "11:18: cannot resolve Fn::GetAtt HelloFunction.QueueUrl: AWS::Serverless::Function has no attribute QueueUrl that ESB can provide",
        ),
        (
            "errors/unsupported-engine.yaml",
            &[],
            "5:15: database engine mysql of Db is not supported by ESB (supported: aurora-postgresql, postgres)",
        ),
        (
            "errors/missing-transform.yaml",
            &[],
            "6:11: AWS::Serverless::Function needs `Transform: AWS::Serverless-2016-10-31` at the top of the template",
        ),
    ];
    for (file, overrides, expected) in cases {
        assert_eq!(
            error(file, overrides),
            format!("tests/fixtures/sam/{file}:{expected}"),
            "{file}"
        );
    }
}

#[test]
fn unreadable_template_names_the_file() {
    let err = sam::load(Path::new("no/such/template.yaml"), &LoadOptions::default())
        .expect_err("missing file");
    assert!(
        err.to_string()
            .starts_with("no/such/template.yaml: cannot read the template: "),
        "{err}"
    );
}

/// Templates written inline, for errors that need no code on disk.
fn parse_error(text: &str) -> String {
    let path = fixture("errors/inline.yaml");
    match sam::parse(text, &path, &LoadOptions::default()) {
        Ok(_) => panic!("should not parse:\n{text}"),
        Err(e) => format!("{}:{}: {}", e.line, e.column, e.message),
    }
}

const HEADER: &str = "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src/\n      Handler: app.handler\n      Runtime: python3.12\n";

#[test]
fn property_errors_point_at_the_value() {
    let cases = [
        (
            "      Timeout: 901\n",
            "9:16: Timeout of function Fn must be between 1 and 900, found 901",
        ),
        (
            "      MemorySize: 64\n",
            "9:19: MemorySize of function Fn must be between 128 and 10240, found 64",
        ),
        (
            "      Architectures: [x86_64, arm64]\n",
            "9:22: Architectures of function Fn must be exactly one of x86_64 or arm64, found [x86_64, arm64]",
        ),
        (
            "      FunctionName: my.function\n",
            "9:21: FunctionName \"my.function\" of Fn may only contain letters, digits, - and _",
        ),
        (
            "      Environment:\n        Variables:\n          AWS_REGION: x\n",
            "11:11: environment variable AWS_REGION of function Fn is reserved by Lambda",
        ),
        (
            "      CodeUri: missing/\n",
            "9:7: duplicate key CodeUri (first defined at line 6)",
        ),
        (
            "      ReservedConcurrentExecutions: 1\n      AutoPublishAlias: live\n      ProvisionedConcurrencyConfig:\n        ProvisionedConcurrentExecutions: 2\n",
            "12:42: ProvisionedConcurrencyConfig.ProvisionedConcurrentExecutions of function Fn (2) is more than ReservedConcurrentExecutions (1)",
        ),
        (
            "      Events:\n        Bad:\n          Type: Schedule\n          Properties:\n            Schedule: rate(1 minutes)\n",
            "13:23: Schedule of event Bad of function Fn: the unit in \"rate(1 minutes)\" must be one of minute, hour, day",
        ),
        (
            "      Events:\n        Bad:\n          Type: Api\n          Properties:\n            Path: /x\n",
            "12:11: event Bad of function Fn has no Method",
        ),
        (
            "      Events:\n        Bad:\n          Type: Api\n          Properties:\n            Path: x\n            Method: get\n",
            "13:19: Path of event Bad of function Fn must start with /, found \"x\"",
        ),
        (
            "      Events:\n        Bad:\n          Type: Api\n          Properties:\n            Path: /x\n            Method: get\n            RestApiId: !Ref Fn\n",
            "15:24: RestApiId of event Bad of function Fn must reference an AWS::Serverless::Api of this template, found \"Fn\"",
        ),
        (
            "      Events:\n        Bad:\n          Type: Schedule\n          Properties:\n            Schedule: rate(1 day)\n            Input: '{not json'\n",
            "14:20: Input of event Bad of function Fn must be JSON text: key must be a string at line 1 column 2",
        ),
        (
            "      Layers: [NotALayer]\n",
            "9:16: layer \"NotALayer\" of function Fn is neither a layer of this template nor a layer ARN",
        ),
    ];
    for (extra, expected) in cases {
        let text = format!("{HEADER}{extra}");
        assert_eq!(parse_error(&text), expected, "{extra}");
    }
}

#[test]
fn duplicate_routes_and_names_are_rejected() {
    let text = format!(
        "{HEADER}      Events:\n        A:\n          Type: Api\n          Properties: {{Path: '/items/{{id}}', Method: get}}\n  Other:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src/\n      Handler: app.other\n      Runtime: python3.12\n      FunctionName: Fn\n      Events:\n        B:\n          Type: Api\n          Properties: {{Path: '/items/{{name}}', Method: GET}}\n"
    );
    assert_eq!(
        parse_error(&text.replace("'/items/{name}'", "/other")),
        "13:3: function name Fn is already used by the function at line 3"
    );
    let text = text.replace("      FunctionName: Fn\n", "");
    assert_eq!(
        parse_error(&text),
        "20:9: route GET /items/{name} of ServerlessRestApi is already defined by event A of function Fn (line 10)"
    );
}

#[test]
fn resource_level_errors() {
    let cases = [
        (
            "  Fn2:\n    Type: AWS::Serverless::Function\n    Condition: Missing\n",
            "11:16: unknown condition Missing (not in the Conditions section)",
        ),
        (
            "  Files:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: Bad_Name\n",
            "12:19: BucketName \"Bad_Name\" of Files may only contain lower-case letters, digits, - and .",
        ),
        (
            "  Db:\n    Type: AWS::RDS::DBInstance\n    Properties:\n      Engine: postgres\n      DBClusterIdentifier: elsewhere\n",
            "13:28: DBClusterIdentifier \"elsewhere\" of Db does not name an AWS::RDS::DBCluster of this template",
        ),
        (
            "  Lib:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      ContentUri: s3://bucket/lib.zip\n",
            "12:19: ContentUri of layer Lib s3://bucket/lib.zip is not a local path; ESB builds from local code",
        ),
    ];
    for (extra, expected) in cases {
        let text = format!("{HEADER}{extra}");
        assert_eq!(parse_error(&text), expected, "{extra}");
    }
}

fn parse_ok(text: &str) -> App {
    let path = fixture("errors/inline.yaml");
    sam::parse(text, &path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn handler_is_required_for_python_only() {
    let text = HEADER.replace("      Handler: app.handler\n", "");
    assert_eq!(
        parse_error(&text),
        "5:5: function Fn has no Handler (required for python3.12)"
    );
    let app = parse_ok(&text.replace("python3.12", "provided.al2"));
    match &app.functions[0].package {
        Package::Zip {
            runtime, handler, ..
        } => assert_eq!(
            (runtime.as_str(), handler.as_str()),
            ("provided.al2", "bootstrap")
        ),
        other => panic!("expected a zip package, got {other:?}"),
    }
}

#[test]
fn lambda_layers_tables_and_plain_functions() {
    let text = format!(
        "{HEADER}      Layers: [!Ref Deps]\n      ProvisionedConcurrencyConfig:\n        ProvisionedConcurrentExecutions: 1\n  Deps:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      Content: src/\n      CompatibleRuntimes: [python3.12]\n  Table:\n    Type: AWS::Serverless::SimpleTable\n  Plain:\n    Type: AWS::Lambda::Function\n    Properties:\n      Code: {{ZipFile: 'def handler(e, c): pass'}}\n"
    );
    let app = parse_ok(&text);
    let function = &app.functions[0];
    assert_eq!(function.provisioned_concurrency, Some(1));
    match &function.package {
        Package::Zip { layers, .. } => {
            assert_eq!(layers.len(), 1);
            assert_eq!(layers[0].logical_id, "Deps");
            assert_eq!(layers[0].content, Code::Dir(fixture("errors/src")));
        }
        other => panic!("expected a zip package, got {other:?}"),
    }
    let messages: Vec<_> = app.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "ProvisionedConcurrencyConfig of function Fn needs AutoPublishAlias in SAM; ESB keeps 1 workers warm anyway",
            "DynamoDB tables are not provided by ESB; Table is skipped",
            "AWS::Lambda::Function Plain is skipped; ESB runs AWS::Serverless::Function resources",
        ]
    );
    assert_eq!(
        (app.warnings[1].line, app.warnings[1].column),
        (17, 3),
        "warnings point at the resource"
    );
}

#[test]
fn image_functions_need_build_metadata() {
    let text = "Transform: AWS::Serverless-2016-10-31\nResources:\n  Img:\n    Type: AWS::Serverless::Function\n    Properties:\n      PackageType: Image\n      ImageUri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest\n";
    assert_eq!(
        parse_error(text),
        "3:3: function Img has PackageType Image but no Metadata with DockerContext and Dockerfile to build it from"
    );
}

#[test]
fn intrinsic_events_and_dynamic_database_secrets() {
    let text = format!(
        "{HEADER}      Events: !If\n        - Always\n        - Tick: {{Type: Schedule, Properties: {{Schedule: rate(1 hour)}}}}\n        - !Ref AWS::NoValue\nConditions:\n  Always: !Equals [a, a]\n"
    );
    // `Conditions` after `Resources` is fine: sections are unordered.
    let app = parse_ok(&text.replace("Resources:\n", "Resources:\n  Cluster:\n    Type: AWS::RDS::DBCluster\n    Properties:\n      Engine: aurora-postgresql\n      MasterUsername: '{{resolve:secretsmanager:db:SecretString:username}}'\n      MasterUserPassword: '{{resolve:secretsmanager:db:SecretString:password}}'\n"));
    assert_eq!(
        app.functions[0].events,
        [Event::Schedule {
            name: "Tick".into(),
            expression: "rate(1 hour)".into(),
            input: None,
            enabled: true,
            timezone: None,
        }]
    );
    assert_eq!(
        app.databases,
        [Database {
            logical_id: "Cluster".into(),
            db_name: "cluster".into(),
            user: "app".into(),
            password: None,
        }]
    );
    assert_eq!(
        app.warnings[0].message,
        "MasterUsername of Cluster is a dynamic reference; ESB uses \"app\""
    );
}
