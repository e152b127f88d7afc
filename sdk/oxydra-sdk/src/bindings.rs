//! Bindings for every host import a tool may call. A component imports only the
//! functions it actually calls, so binding the union here widens no grant.

wit_bindgen::generate!({
    path: ["wit/v0.1/tool", "wit/v0.1/fs", "wit/v0.1/vault", "wit/v0.1/llm", "wit/v0.1/agent", "wit/v0.1/sdk"],
    world: "oxydra:sdk/guest-imports",
    generate_all,
});

/// `oxydra:llm/types` only: no functions, so no imports.
#[cfg(feature = "llm")]
pub mod llm {
    wit_bindgen::generate!({
        path: ["wit/v0.1/tool", "wit/v0.1/fs", "wit/v0.1/vault", "wit/v0.1/llm", "wit/v0.1/agent", "wit/v0.1/sdk"],
        world: "oxydra:sdk/llm-types",
        generate_all,
        // No function uses these types here; the adapters and the export glue do.
        generate_unused_types: true,
    });
}

/// `oxydra:channel/types` and the `oxydra:channel/host` imports (emit, durable state,
/// log). The importing world is inline: `oxydra:sdk` names none for channels, and the
/// `chat-channel` profile world pulls in `wasi:http`, which the SDK binds with `wasip2`.
#[cfg(feature = "channel")]
pub mod channel {
    wit_bindgen::generate!({
        path: ["wit/v0.1/channel"],
        inline: "package oxydra:sdk-channel@0.1.0;\n\
                 world channel-imports { import oxydra:channel/host@0.1.0; }\n",
        world: "oxydra:sdk-channel/channel-imports",
        generate_all,
        // The action and channel-info types are the export glue's; bind them here too.
        generate_unused_types: true,
        // Channels compare inbound messages and errors in their unit tests.
        additional_derives: [PartialEq, Eq],
    });
}

/// `oxydra:channel/outbox` (and the `oxydra:channel/types` it uses). Inline like
/// [`channel`]: a tool that calls `send-media` imports the outbox and nothing of the
/// channel host.
#[cfg(feature = "outbox")]
pub mod outbox {
    wit_bindgen::generate!({
        path: ["wit/v0.1/channel"],
        inline: "package oxydra:sdk-outbox@0.1.0;\n\
                 world outbox-imports { import oxydra:channel/outbox@0.1.0; }\n",
        world: "oxydra:sdk-outbox/outbox-imports",
        generate_all,
    });
}

/// `oxydra:scheduler/jobs`. Inline like [`channel`]: a tool that calls it imports the
/// jobs interface and nothing else.
#[cfg(feature = "scheduler")]
pub mod scheduler {
    wit_bindgen::generate!({
        path: ["wit/v0.1/scheduler"],
        inline: "package oxydra:sdk-scheduler@0.1.0;\n\
                 world scheduler-imports { import oxydra:scheduler/jobs@0.1.0; }\n",
        world: "oxydra:sdk-scheduler/scheduler-imports",
        generate_all,
    });
}

/// `oxydra:memory/store`. Inline like [`channel`]: a tool that calls it imports the
/// memory interface and nothing else.
#[cfg(feature = "memory")]
pub mod memory {
    wit_bindgen::generate!({
        path: ["wit/v0.1/memory"],
        inline: "package oxydra:sdk-memory@0.1.0;\n\
                 world memory-imports { import oxydra:memory/store@0.1.0; }\n",
        world: "oxydra:sdk-memory/memory-imports",
        generate_all,
    });
}

/// `oxydra:shell/exec`. Inline like [`channel`]: a tool that calls it imports the shell
/// interface and nothing else.
#[cfg(feature = "shell")]
pub mod shell {
    wit_bindgen::generate!({
        path: ["wit/v0.1/shell"],
        inline: "package oxydra:sdk-shell@0.1.0;\n\
                 world shell-imports { import oxydra:shell/exec@0.1.0; }\n",
        world: "oxydra:sdk-shell/shell-imports",
        generate_all,
    });
}
