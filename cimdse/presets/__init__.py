"""Architecture presets shipped as YAML files (see cimdse.arch.PRESET_NAMES)."""
