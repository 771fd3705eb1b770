//! The built-in services, listed by name.

use dci_model::ServiceName;

/// A service that DCI ships with and containers can keep warm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// Cloud rendering of a 3D scene: PNG frames and a live interactive stream.
    Render,
}

impl Builtin {
    /// Every built-in service.
    pub const ALL: [Builtin; 1] = [Builtin::Render];

    /// The service's name as text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Builtin::Render => "render",
        }
    }

    /// One line saying what the service does.
    pub const fn description(self) -> &'static str {
        match self {
            Builtin::Render => {
                "cloud rendering: ray-traces a 3D scene; PNG frames for a given camera, and a live JPEG stream over WebSocket that follows mouse and key input"
            }
        }
    }

    /// The service's name.
    pub fn name(self) -> ServiceName {
        // The names above are lowercase ASCII words; the `catalog_names_are_valid` test checks them.
        ServiceName::new(self.as_str()).expect("built-in service names are valid")
    }

    /// The built-in service with this name, if any.
    pub fn from_name(name: &ServiceName) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.as_str() == name.as_str())
    }
}

/// The names of all built-in services.
pub fn catalog() -> Vec<ServiceName> {
    Builtin::ALL.into_iter().map(Builtin::name).collect()
}

/// Whether `name` is a built-in service.
pub fn is_builtin(name: &ServiceName) -> bool {
    Builtin::from_name(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_are_valid() {
        for b in Builtin::ALL {
            assert!(ServiceName::new(b.as_str()).is_ok(), "{b:?}");
        }
    }
}
