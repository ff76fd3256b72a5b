"""One exception tree for the whole library.

The library raises and never prints or exits; the CLI maps each class to a one-line message, a
hint and an exit code. Codes stay stable so scripts can match on them in ``--json`` output.
Exit codes follow docker's convention for the runtime's own failures (125), so that ``run`` can
return the payload's status unchanged.
"""

from __future__ import annotations


class NspawnctlError(Exception):
    """Root of every error nspawnctl raises on purpose."""

    exit_code: int = 125
    code: str = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidArgument(NspawnctlError):
    code = "invalid-argument"
    exit_code = 2


class InvalidName(InvalidArgument):
    code = "invalid-name"


class InvalidReference(InvalidArgument):
    code = "invalid-reference"


class NotFound(NspawnctlError):
    code = "not-found"


class ImageNotFound(NotFound):
    code = "image-not-found"


class ContainerNotFound(NotFound):
    code = "container-not-found"


class Conflict(NspawnctlError):
    code = "conflict"


class NameInUse(Conflict):
    code = "name-in-use"


class ImageInUse(Conflict):
    code = "image-in-use"


class ContainerRunning(Conflict):
    code = "container-running"


class ContainerNotRunning(Conflict):
    code = "container-not-running"


class PortInUse(Conflict):
    """A published host port is taken (by another program or another container)."""

    code = "port-in-use"


class VolumeNotFound(NotFound):
    code = "volume-not-found"


class VolumeInUse(Conflict):
    """A named volume some container's definition binds (docker refuses it even with -f)."""

    code = "volume-in-use"


class VolumeCopyFailed(NspawnctlError):
    """docker's copy-up of the image's directory into a new volume failed (ENOSPC, odd files)."""

    code = "volume-copy-failed"


class NetworkError(NspawnctlError):
    """The container's network could not be built (netns, links, addresses, proxies)."""

    code = "network-error"


class DefinitionError(InvalidArgument):
    """A .nspawn definition given to apply/diff is wrong; the message starts with FILE:LINE."""

    code = "definition-error"


class PoolError(NspawnctlError):
    code = "pool"


class PoolNotBtrfs(PoolError):
    code = "pool-not-btrfs"


class ArchiveError(NspawnctlError):
    """The archive cannot be read: truncated, corrupt, unknown compression."""

    code = "bad-archive"


class UnsafeArchive(ArchiveError):
    """The archive tries to write outside its root (.., absolute names, links escaping)."""

    code = "unsafe-archive"


class FetchError(NspawnctlError):
    """A download failed: the server is unreachable, answered an error, or dropped the connection."""

    code = "fetch-failed"


class DownloadNotFound(FetchError):
    """The server answered 404 (or 410) for a file the pull needs."""

    code = "download-not-found"


class RegistryError(FetchError):
    """A registry answered with an error of the OCI Distribution API ({"errors": [...]})."""

    code = "registry-error"


class ManifestUnknown(RegistryError, NotFound):
    """The registry has no such repository, tag or digest (MANIFEST_UNKNOWN, NAME_UNKNOWN, 404)."""

    code = "manifest-unknown"


class AuthenticationRequired(RegistryError):
    """The registry (or its token server) refused us: no credentials, or wrong ones (401/403)."""

    code = "authentication-required"


class InsecureTransport(InvalidArgument):
    """A plain-HTTP URL without ``--insecure``."""

    code = "insecure-transport"


class VerificationFailed(NspawnctlError):
    """A download did not pass verification (checksum, signature, manifest); nothing was kept."""

    code = "verification-failed"


class SignatureMissing(VerificationFailed):
    code = "signature-missing"


class ChecksumMismatch(VerificationFailed):
    code = "checksum-mismatch"


class UntrustedSignature(VerificationFailed):
    """The signature is missing a trusted signer: unknown key, or a key not trusted for this name."""

    code = "untrusted-signature"


class PolicyDenied(VerificationFailed):
    """The trust policy for this registry and name does not allow the pull."""

    code = "policy-denied"


class SystemdError(NspawnctlError):
    """systemd, machined or journald refused or failed a request."""

    code = "systemd"


class CommandFailed(NspawnctlError):
    """A helper program (btrfs, mkfs, nsenter, journalctl) failed."""

    code = "command-failed"


class CommandNotFound(NspawnctlError):
    """The command to run is not in the container: no such file, or no such name in its $PATH
    (docker and a shell exit 127)."""

    code = "command-not-found"
    exit_code = 127


class CommandNotExecutable(NspawnctlError):
    """The command to run exists in the container but cannot be executed: no execute permission,
    a directory, not a regular file (docker and a shell exit 126)."""

    code = "command-not-executable"
    exit_code = 126


class UserNotUsable(InvalidArgument):
    """``-u``/the image's USER names a user systemd-nspawn could not run as: no entry in the
    image's /etc/passwd, or a group other than the user's primary one. Found at create; a failure
    of the runtime's own (125), as docker's."""

    code = "user-not-usable"
    exit_code = 125
