/// This build's version, as `connlog --version` prints it and `collectors.version` records it.
public enum ConnLogVersion {
    public static let current = "0.1.0"
}
