//! Components installed from an OCI registry (or a local file): resolving a source,
//! showing what it declares before its bytes are fetched, checking the real component
//! against the grant, and pinning it in `.oxydra/components.lock`.
//!
//! The order is the trust model: manifest and config first (the declared profile, and
//! the signature, which covers the manifest and so the layer digest); then the layer,
//! verified against its digest; then the *real* imports, read from the bytes (the
//! config's list is never trusted), the WIT version range and the grant; then a trial
//! load; only then is anything written, blob first, lock last, each atomically.

mod trust;

pub use trust::{Signature, trusted_keys};

use crate::config::{AgentConfig, ComponentsConfig};
use oxydra_registry::artifact::{self, Descriptor};
use oxydra_registry::lock::{LockFile, Locked, Store};
use oxydra_registry::{Client, ClientOptions, Credentials, Reference, RegistryError};
use oxydra_runtime::profiles::{self, LoadError, Shape};
use oxydra_runtime::{ComponentHost, ComponentSpec, Profile, ToolSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why an install, update or load of an installed component did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The registry could not be reached, or does not have it, or refused access.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The component, its artifact or its signature does not pass a check.
    #[error("{0}")]
    Refused(String),
    /// A bad argument or config value.
    #[error("{0}")]
    Usage(String),
}

/// Where a component comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Oci(Reference),
    File(PathBuf),
}

impl Source {
    /// `oci://…` or a path to a `.wasm` file; `warg://` is refused with the reason.
    pub fn parse(s: &str) -> Result<Source, InstallError> {
        if s.starts_with("oci://") || s.starts_with("warg://") {
            return Ok(Source::Oci(Reference::parse(s)?));
        }
        if let Some(rest) = s.strip_prefix("file://") {
            return Ok(Source::File(PathBuf::from(rest)));
        }
        let p = PathBuf::from(s);
        if p.exists() {
            return Ok(Source::File(p));
        }
        if s.contains("://") {
            return Err(InstallError::Usage(format!(
                "`{s}`: only oci:// references and local .wasm files are sources"
            )));
        }
        Err(InstallError::Usage(format!(
            "`{s}` is neither a file nor an oci:// reference; a registry component is oci://HOST[:PORT]/NAMESPACE/NAME:VERSION"
        )))
    }
}

/// The project's `.oxydra` directory, beside `./.oxydra/agent.toml`.
pub fn store() -> Store {
    Store::new(".oxydra")
}

/// A client for `r`'s registry with its `[components.registries]` settings; `insecure`
/// is the command line's `--insecure`.
pub fn client(
    cfg: &ComponentsConfig,
    base_dir: Option<&Path>,
    r: &Reference,
    insecure: bool,
) -> Result<Client, InstallError> {
    let entry = cfg.registries.get(&r.registry).cloned().unwrap_or_default();
    let env = |key: &str, var: &Option<String>| -> Result<Option<String>, InstallError> {
        match var {
            None => Ok(None),
            Some(v) => std::env::var(v).map(Some).map_err(|_| {
                InstallError::Usage(format!(
                    "components.registries.\"{}\".{key}: the environment variable {v} is not set",
                    r.registry
                ))
            }),
        }
    };
    let credentials = Credentials {
        username: env("username_env", &entry.username_env)?,
        password: env("password_env", &entry.password_env)?,
        token: env("token_env", &entry.token_env)?,
    };
    let ca_file = entry.ca_file.map(|p| match base_dir {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    });
    Ok(Client::new(
        r,
        ClientOptions {
            insecure: insecure || entry.insecure,
            ca_file,
            credentials,
        },
    )?)
}

/// What a component says it needs, before anything of it runs.
#[derive(Debug, Clone)]
pub struct Declared {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The narrowest profile that grants the declared imports.
    pub profile: Option<Profile>,
    /// Why the declared names fit no profile (a refused interface, a WIT version).
    pub problem: Option<String>,
    /// The declared names classified, when they are acceptable at all.
    pub shape: Option<Shape>,
}

fn declared(name: &str, imports: Vec<String>, exports: Vec<String>) -> Declared {
    let (profile, problem, shape) = match profiles::classify(name, imports.clone(), exports.clone())
    {
        Ok(shape) => match shape.derived_profile() {
            Some(p) => (Some(p), None, Some(shape)),
            None => (
                None,
                Some("no single profile grants all of its imports".to_string()),
                Some(shape),
            ),
        },
        Err(e) => (None, Some(e.to_string()), None),
    };
    Declared {
        imports,
        exports,
        profile,
        problem,
        shape,
    }
}

/// A source read as far as its manifest and config (and its signature checked).
pub struct Resolved {
    pub source: Source,
    /// What to record as `source` in the lock.
    pub source_text: String,
    pub version: Option<String>,
    pub manifest_digest: Option<String>,
    pub layer: Option<Descriptor>,
    /// From the config (a registry artifact) or from the file itself.
    pub declared: Declared,
    pub signature: Signature,
    /// The bytes, for a file source (read already).
    wasm: Option<Vec<u8>>,
    client: Option<Client>,
}

/// A component ready to be pinned.
pub struct Checked {
    pub name: String,
    pub wasm: Vec<u8>,
    pub shape: Shape,
    pub profile: Profile,
    pub grant: Profile,
}

pub struct Installer<'a> {
    pub cfg: &'a AgentConfig,
    pub base_dir: Option<PathBuf>,
    pub host: ComponentHost,
    pub insecure: bool,
}

impl Installer<'_> {
    /// Read the manifest and config (not the layer) and check the signature.
    pub fn resolve(&self, source: &Source) -> Result<Resolved, InstallError> {
        let resolved = self.resolve_any(source)?;
        // A provider or channel says so in its exports: refused before any download.
        if let Some(shape) = &resolved.declared.shape
            && !matches!(
                shape.export,
                profiles::ExportKind::Tool
                    | profiles::ExportKind::Provider
                    | profiles::ExportKind::Channel
            )
        {
            return Err(not_a_tool(&resolved.source_text, shape.derived_profile()));
        }
        Ok(resolved)
    }

    fn resolve_any(&self, source: &Source) -> Result<Resolved, InstallError> {
        match source {
            Source::File(path) => {
                let wasm = std::fs::read(path)
                    .map_err(|e| InstallError::Usage(format!("{}: {e}", path.display())))?;
                let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                let name = file_name(path);
                let (imports, exports) = self
                    .host
                    .interfaces(&name, &wasm)
                    .map_err(|e| InstallError::Refused(e.to_string()))?;
                let signature = trust::for_file(self.cfg)?;
                Ok(Resolved {
                    source: source.clone(),
                    source_text: format!("file://{}", abs.display()),
                    version: None,
                    manifest_digest: None,
                    layer: Some(Descriptor::of(artifact::LAYER_MEDIA_TYPE, &wasm)),
                    declared: declared(&name, imports, exports),
                    signature,
                    wasm: Some(wasm),
                    client: None,
                })
            }
            Source::Oci(r) => {
                let client = client(
                    &self.cfg.components,
                    self.base_dir.as_deref(),
                    r,
                    self.insecure,
                )?;
                let fetched = client.manifest(r)?;
                let (_, layer) =
                    artifact::check_manifest(r, &fetched.bytes, fetched.media_type.as_deref())?;
                let manifest: artifact::Manifest = serde_json::from_slice(&fetched.bytes)
                    .map_err(|e| InstallError::Refused(format!("{r}: {e}")))?;
                let config_bytes =
                    client.blob(r, &manifest.config, "config", artifact::MAX_CONFIG_BYTES)?;
                let config = artifact::parse_config(r, &config_bytes)?;
                let info = config.component.unwrap_or_default();
                let signature = trust::check(
                    self.cfg,
                    self.base_dir.as_deref(),
                    &client,
                    r,
                    &fetched.digest,
                )?;
                Ok(Resolved {
                    source: source.clone(),
                    // The tag is what `update` follows; a digest-only reference keeps its digest.
                    source_text: Reference {
                        digest: if r.tag.is_some() {
                            None
                        } else {
                            r.digest.clone()
                        },
                        ..r.clone()
                    }
                    .to_string(),
                    version: r.tag.clone(),
                    manifest_digest: Some(fetched.digest),
                    layer: Some(layer),
                    declared: declared(&r.default_name(), info.imports, info.exports),
                    signature,
                    wasm: None,
                    client: Some(client),
                })
            }
        }
    }

    /// Download (or take) the bytes, verify them, read their real imports, check the WIT
    /// range and the grant, and load the tool once. `name` overrides the name the
    /// component describes itself as only if they agree.
    pub fn check(
        &self,
        resolved: &mut Resolved,
        grant: Profile,
        name: Option<&str>,
    ) -> Result<Checked, InstallError> {
        let wasm = match (
            resolved.wasm.take(),
            &resolved.client,
            &resolved.source,
            &resolved.layer,
        ) {
            (Some(w), ..) => w,
            (None, Some(client), Source::Oci(r), Some(layer)) => {
                client.blob(r, layer, "component layer", artifact::MAX_LAYER_BYTES)?
            }
            _ => return Err(InstallError::Usage("nothing to check".into())),
        };
        let guess = match (name, &resolved.source) {
            (Some(n), _) => n.to_string(),
            (None, Source::Oci(r)) => r.default_name(),
            (None, Source::File(p)) => file_name(p),
        };
        let refused =
            |e: LoadError| InstallError::Refused(format!("{}: {e}", resolved.source_text));
        let (shape, _) = self.host.inspect(&guess, &wasm).map_err(refused)?;
        // The grant first: its refusal names the interfaces beyond it.
        shape.check_grant(&guess, grant).map_err(refused)?;
        let profile = shape.derived_profile().ok_or_else(|| {
            InstallError::Refused(format!(
                "{}: no single profile grants all of its imports ({})",
                resolved.source_text,
                shape.imports.join(", ")
            ))
        })?;
        if matches!(
            profile.export(),
            profiles::ExportKind::Provider | profiles::ExportKind::Channel
        ) {
            return self.check_provider(resolved, wasm, shape, profile, grant, guess);
        }
        if profile.export() != profiles::ExportKind::Tool {
            return Err(not_a_tool(&resolved.source_text, Some(profile)));
        }
        let wasm = Arc::new(wasm);
        let spec = |n: &str| ToolSpec {
            name: n.to_string(),
            components: vec![ComponentSpec {
                name: n.to_string(),
                wasm: wasm.clone(),
                grant,
                expected_sha256: None,
            }],
            limits: self.cfg.components.limits_for(n),
            web: Default::default(),
        };
        let described = match self.host.load(&spec(&guess)) {
            Ok(_) => guess.clone(),
            Err(LoadError::Other { message, .. })
                if name.is_none() && message.starts_with("it describes itself as `") =>
            {
                let n = message
                    .trim_start_matches("it describes itself as `")
                    .split('`')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                self.host.load(&spec(&n)).map_err(refused)?;
                n
            }
            Err(e) => return Err(refused(e)),
        };
        let wasm = Arc::try_unwrap(wasm).unwrap_or_else(|a| (*a).clone());
        Ok(Checked {
            name: described,
            wasm,
            shape,
            profile,
            grant,
        })
    }

    /// A provider adapter or a chat channel: loaded once under its grant (its `describe`
    /// must answer); it is named as installed (the reference's name, or the file's),
    /// which config names in `[providers.registry.<name>] component` or
    /// `[channels.telegram] component`.
    fn check_provider(
        &self,
        resolved: &Resolved,
        wasm: Vec<u8>,
        shape: Shape,
        profile: Profile,
        grant: Profile,
        name: String,
    ) -> Result<Checked, InstallError> {
        let wasm = Arc::new(wasm);
        let refused =
            |e: LoadError| InstallError::Refused(format!("{}: {e}", resolved.source_text));
        if profile.export() == profiles::ExportKind::Channel {
            self.host
                .load_channel(oxydra_runtime::channels::ChannelSpec {
                    name: name.clone(),
                    wasm: wasm.clone(),
                    expected_sha256: None,
                    // A trial load only: nothing is sent anywhere.
                    api_base_url: "https://channel.invalid".into(),
                    token: None,
                    poll_timeout_secs: None,
                    limits: oxydra_runtime::Limits::default(),
                })
                .map_err(refused)?;
        } else {
            self.host
                .load_provider(provider_spec(&name, wasm.clone()))
                .map_err(refused)?;
        }
        let wasm = Arc::try_unwrap(wasm).unwrap_or_else(|a| (*a).clone());
        Ok(Checked {
            name,
            wasm,
            shape,
            profile,
            grant,
        })
    }

    /// Write the blob, then the lock with `checked` in place of any entry of its name.
    pub fn commit(
        &self,
        store: &Store,
        resolved: &Resolved,
        checked: &Checked,
    ) -> Result<Locked, InstallError> {
        let _guard = store.exclusive()?;
        let mut lock = store.read()?;
        let layer_digest = artifact::sha256_digest(&checked.wasm);
        let entry = Locked {
            name: checked.name.clone(),
            source: resolved.source_text.clone(),
            version: resolved.version.clone(),
            manifest_digest: resolved.manifest_digest.clone(),
            layer_digest: layer_digest.clone(),
            size: checked.wasm.len() as u64,
            grant: checked.grant.name().to_string(),
            profile: checked.profile.name().to_string(),
            wit_version: checked.shape.wit_version.clone(),
            signed_by: resolved.signature.fingerprint().map(str::to_string),
            installed_at: now(),
        };
        let unchanged = |e: RegistryError| {
            RegistryError::Other(format!(
                "{e}; nothing was changed (what was installed before still is)"
            ))
        };
        store
            .put_blob(&layer_digest, &checked.wasm)
            .map_err(unchanged)?;
        lock.components.retain(|c| c.name != entry.name);
        lock.components.push(entry.clone());
        store.write(&lock).map_err(unchanged)?;
        store.collect_garbage(&lock);
        Ok(entry)
    }

    /// The registry client of a resolved OCI source.
    pub fn client_of<'r>(&self, resolved: &'r Resolved) -> Option<&'r Client> {
        resolved.client.as_ref()
    }
}

/// A provider spec for a trial load: no base URL, no key (nothing is sent).
fn provider_spec(name: &str, wasm: Arc<Vec<u8>>) -> oxydra_runtime::llm::ProviderSpec {
    oxydra_runtime::llm::ProviderSpec {
        name: name.to_string(),
        wasm,
        expected_sha256: None,
        base_url: None,
        api_key: None,
        api_key_env: None,
        extra_headers: Vec::new(),
        limits: oxydra_runtime::Limits::default(),
        retry: oxydra_runtime::llm::RetryPolicy::default(),
    }
}

fn not_a_tool(source: &str, profile: Option<Profile>) -> InstallError {
    let what = match profile {
        Some(p) if p.export() == profiles::ExportKind::Step => format!(
            "it is one step of a two-step tool (`{p}`); only single-component tools install from a registry"
        ),
        Some(p) => format!(
            "it is a `{p}` component; tools, providers and channels install from a registry"
        ),
        None => {
            "it exports no oxydra tool, provider or channel interface; only those install from a registry".into()
        }
    };
    InstallError::Refused(format!("{source}: {what}"))
}

fn file_name(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().replace('-', "_"))
        .unwrap_or_default()
}

fn now() -> String {
    oxydra_registry::now_rfc3339()
}

/// The installed tools, each read from the store and checked against its pinned digest
/// (every load), as specs under their pinned grant.
pub fn installed_specs(
    cfg: &AgentConfig,
    base_dir: Option<&Path>,
    store: &Store,
) -> Result<Vec<(Locked, ToolSpec)>, InstallError> {
    let lock: LockFile = store.read()?;
    let keys = required_keys(cfg, base_dir)?;
    let mut out = Vec::new();
    for c in lock.components {
        // Providers are loaded (and checked) by the provider entry that names them.
        if Profile::parse(&c.grant).is_some_and(|g| g.export() != profiles::ExportKind::Tool) {
            continue;
        }
        let (wasm, grant) = verified(&c, store, keys.as_deref())?;
        let spec = ToolSpec {
            name: c.name.clone(),
            components: vec![ComponentSpec {
                name: c.name.clone(),
                wasm: Arc::new(wasm),
                grant,
                expected_sha256: None,
            }],
            limits: cfg.components.limits_for(&c.name),
            web: Default::default(),
        };
        out.push((c, spec));
    }
    Ok(out)
}

/// The installed `llm-provider` component `name` (`[providers.registry.*] component`),
/// checked like every installed load: its digest against the lock, its signature under
/// `require`.
pub fn installed_provider(
    cfg: &AgentConfig,
    base_dir: Option<&Path>,
    store: &Store,
    name: &str,
) -> Result<Arc<Vec<u8>>, InstallError> {
    installed_as(cfg, base_dir, store, name, Profile::LlmProvider)
}

/// The installed `chat-channel` component `name` (`[channels.telegram] component`),
/// checked like [`installed_provider`].
pub fn installed_channel(
    cfg: &AgentConfig,
    base_dir: Option<&Path>,
    store: &Store,
    name: &str,
) -> Result<Arc<Vec<u8>>, InstallError> {
    installed_as(cfg, base_dir, store, name, Profile::ChatChannel)
}

fn installed_as(
    cfg: &AgentConfig,
    base_dir: Option<&Path>,
    store: &Store,
    name: &str,
    want: Profile,
) -> Result<Arc<Vec<u8>>, InstallError> {
    let lock: LockFile = store.read()?;
    let Some(c) = lock.components.iter().find(|c| c.name == name) else {
        let installed: Vec<&str> = lock.components.iter().map(|c| c.name.as_str()).collect();
        return Err(InstallError::Usage(format!(
            "no installed component `{name}` (installed: {}); install one with `oxydra-host component install oci://… --grant {want}`",
            if installed.is_empty() {
                "none".to_string()
            } else {
                installed.join(", ")
            }
        )));
    };
    let keys = required_keys(cfg, base_dir)?;
    let (wasm, grant) = verified(c, store, keys.as_deref())?;
    if grant != want {
        return Err(InstallError::Usage(format!(
            "component `{name}` is installed as `{}`, not as `{want}`",
            grant.name()
        )));
    }
    Ok(Arc::new(wasm))
}

/// The trusted keys when `[components.trust] mode = "require"`.
fn required_keys(
    cfg: &AgentConfig,
    base_dir: Option<&Path>,
) -> Result<Option<Vec<oxydra_registry::cosign::PublicKey>>, InstallError> {
    if cfg.components.trust.mode == crate::config::agent::TrustMode::Require {
        Ok(Some(trusted_keys(cfg, base_dir)?))
    } else {
        Ok(None)
    }
}

/// An installed component's bytes (their digest checked against the lock) and grant;
/// under `require`, its signer must be a trusted key.
fn verified(
    c: &Locked,
    store: &Store,
    keys: Option<&[oxydra_registry::cosign::PublicKey]>,
) -> Result<(Vec<u8>, Profile), InstallError> {
    let path = store.blob_path(&c.layer_digest);
    let wasm = std::fs::read(&path).map_err(|e| {
        InstallError::Refused(format!(
            "component `{}`: {} is unreadable ({e}); reinstall it from {}",
            c.name,
            path.display(),
            c.source
        ))
    })?;
    let actual = artifact::sha256_digest(&wasm);
    if actual != c.layer_digest {
        return Err(InstallError::Refused(format!(
            "component `{}`: {} has digest {actual}, but components.lock pins {}: the file was changed after install; reinstall it from {}",
            c.name,
            path.display(),
            c.layer_digest,
            c.source
        )));
    }
    let grant = Profile::parse(&c.grant).ok_or_else(|| {
        InstallError::Refused(format!(
            "component `{}`: components.lock grants `{}`, which is not a profile of this host",
            c.name, c.grant
        ))
    })?;
    if let Some(keys) = &keys
        && !c
            .signed_by
            .as_ref()
            .is_some_and(|f| keys.iter().any(|k| &k.fingerprint == f))
    {
        return Err(InstallError::Refused(format!(
            "component `{}` was installed without a signature from a key in [components.trust] keys, which mode = \"require\" demands; reinstall it from a signed source ({})",
            c.name, c.source
        )));
    }
    Ok((wasm, grant))
}
