// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IMessageRecipient} from "./IMessageRecipient.sol";

/// @title Gateway: sends cross-chain messages and delivers the ones a committee attested.
/// @notice Outbound: `send` builds a message in Hyperlane's wire format
///         (version u8 = 3 | nonce u32 | origin u32 | sender bytes32 | destination u32 |
///         recipient bytes32 | body), id = keccak256(message), and emits `Dispatch`.
///         Inbound: `deliver` / `deliverBatch` accept a message only with signatures of at least
///         `threshold` distinct attesters over `attestationDigest(origin, id, originBlockHash)` in
///         EIP-191 form, and at most once per id.
/// @dev The digest binds this chain's id and this gateway's address, so an attestation cannot be
///      replayed on another chain or another gateway. It must stay byte-for-byte equal to
///      `proofs.committee.attestation_digest` in the Python relayer.
contract Gateway {
    /// @notice One item of `deliverBatch`.
    /// @param gasLimit gas forwarded to the recipient's `handle`; the call fails on its own (the
    ///        item is reported as failed) if the recipient needs more.
    struct Delivery {
        bytes message;
        bytes32 originBlockHash;
        bytes[] signatures;
        uint64 gasLimit;
    }

    uint8 public constant VERSION = 3;
    /// @dev keccak256("relayer.attestation.v1"): domain separator of the attestation digest.
    bytes32 public constant ATTESTATION_TAG = keccak256("relayer.attestation.v1");

    /// @dev version(1) + nonce(4) + origin(4) + sender(32) + destination(4) + recipient(32).
    uint256 private constant HEADER_LENGTH = 77;
    uint256 private constant SIGNATURE_LENGTH = 65;
    /// @dev secp256k1n / 2: larger s values are the malleable twin of a valid signature.
    uint256 private constant HALF_CURVE_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    /// @dev Gas kept beyond gasLimit * 64/63 when calling a recipient in a batch: covers the CALL
    ///      itself (warm account: the code-size check touched it) and the opcodes up to it.
    uint256 private constant CALL_GAS_RESERVE = 5_000;
    /// @dev At most this many bytes of a failed recipient's revert data are copied into
    ///      `DeliveryFailed`: a recipient cannot make the batch pay for a huge revert payload.
    uint256 private constant MAX_REASON_LENGTH = 256;

    uint32 public immutable localDomain;
    address public owner;
    /// @notice The nonce the next `send` will use.
    uint32 public nonce;
    uint256 public threshold;
    address[] private _attesters;
    mapping(address => bool) public isAttester;
    /// @notice Whether a message id was delivered here (successfully handled by its recipient).
    mapping(bytes32 => bool) public delivered;

    event Dispatch(bytes32 indexed id, uint32 indexed destination, bytes message);
    event Delivered(bytes32 indexed id);
    event DeliveryFailed(bytes32 indexed id, bytes reason);
    event AttestersChanged(address[] attesters, uint256 threshold);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error ZeroOwner();
    error InvalidThreshold(uint256 threshold, uint256 attesterCount);
    error ZeroAttester(uint256 index);
    error DuplicateAttester(address attester);
    error LocalDestination(uint32 destination);
    error MessageTooShort(uint256 length);
    error UnsupportedVersion(uint8 version);
    error WrongDestination(uint32 destination, uint32 localDomain);
    error AlreadyDelivered(bytes32 id);
    error InvalidSignatureLength(uint256 index, uint256 length);
    error InvalidSignatureV(uint256 index, uint8 v);
    error HighS(uint256 index);
    error InvalidSignature(uint256 index);
    error UnknownAttester(uint256 index, address signer);
    error SignersNotAscending(uint256 index, address signer);
    error InsufficientSignatures(uint256 count, uint256 threshold);
    error InvalidRecipient(bytes32 recipient);
    error RecipientNotContract(address recipient);
    error InsufficientGasForRecipient(bytes32 id, uint256 gasLimit, uint256 gasLeft);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(uint32 localDomain_, address[] memory attesters_, uint256 threshold_) {
        localDomain = localDomain_;
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
        _setAttesters(attesters_, threshold_);
    }

    // ------------------------------------------------------------------ administration

    function setAttesters(address[] calldata attesters_, uint256 threshold_) external onlyOwner {
        _setAttesters(attesters_, threshold_);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroOwner();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function attesters() external view returns (address[] memory) {
        return _attesters;
    }

    function _setAttesters(address[] memory attesters_, uint256 threshold_) private {
        uint256 n = attesters_.length;
        // threshold > n / 2 (a strict majority, so two disjoint quorums cannot exist) and > 0.
        if (threshold_ == 0 || threshold_ > n || threshold_ * 2 <= n) {
            revert InvalidThreshold(threshold_, n);
        }
        address[] storage current = _attesters;
        for (uint256 i = 0; i < current.length; ++i) {
            isAttester[current[i]] = false;
        }
        delete _attesters;
        for (uint256 i = 0; i < n; ++i) {
            address a = attesters_[i];
            if (a == address(0)) revert ZeroAttester(i);
            if (isAttester[a]) revert DuplicateAttester(a);
            isAttester[a] = true;
            _attesters.push(a);
        }
        threshold = threshold_;
        emit AttestersChanged(attesters_, threshold_);
    }

    // ------------------------------------------------------------------ outbound

    /// @notice Sends `body` to `recipient` on domain `destination`.
    /// @return id keccak256 of the message bytes emitted in `Dispatch`.
    function send(uint32 destination, bytes32 recipient, bytes calldata body)
        external
        returns (bytes32 id)
    {
        if (destination == localDomain) revert LocalDestination(destination);
        uint32 n = nonce;
        bytes memory message = abi.encodePacked(
            VERSION, n, localDomain, bytes32(uint256(uint160(msg.sender))), destination, recipient, body
        );
        nonce = n + 1; // checked: reverts once the 2^32 nonces are used up
        id = keccak256(message);
        emit Dispatch(id, destination, message);
    }

    // ------------------------------------------------------------------ inbound

    /// @notice The digest attesters sign (in EIP-191 "\x19Ethereum Signed Message:\n32" form).
    function attestationDigest(uint32 origin, bytes32 id, bytes32 originBlockHash)
        public
        view
        returns (bytes32)
    {
        return keccak256(
            abi.encode(ATTESTATION_TAG, block.chainid, address(this), origin, id, originBlockHash)
        );
    }

    /// @notice Delivers one attested message; reverts (bubbling the recipient's reason) if the
    ///         recipient reverts, so the message stays undelivered.
    /// @param signatures 65-byte r‖s‖v signatures (v 27/28, low s) of distinct attesters, ordered
    ///        by strictly ascending signer address; at least `threshold` of them.
    function deliver(bytes calldata message, bytes32 originBlockHash, bytes[] calldata signatures)
        external
    {
        (bytes32 id, uint32 origin) = _checkMessage(message);
        if (delivered[id]) revert AlreadyDelivered(id);
        _verifySignatures(attestationDigest(origin, id, originBlockHash), signatures);

        bytes32 recipientWord = bytes32(message[45:77]);
        address recipient = _recipientAddress(recipientWord);
        if (recipient.code.length == 0) revert RecipientNotContract(recipient);

        delivered[id] = true; // before the call: a re-entering recipient sees it delivered
        IMessageRecipient(recipient).handle(origin, bytes32(message[9:41]), message[HEADER_LENGTH:]);
        emit Delivered(id);
    }

    /// @notice Delivers several attested messages, each with its own gas cap for the recipient.
    /// @dev Per item: already delivered -> ok = false, nothing emitted (racing relayers are not an
    ///      error); malformed message, wrong destination or bad signatures -> the whole batch
    ///      reverts (the relayer verifies before it submits); recipient missing, reverting or out
    ///      of gas -> `DeliveryFailed`, ok = false, the message stays undelivered and can be retried.
    function deliverBatch(Delivery[] calldata items) external returns (bool[] memory ok) {
        ok = new bool[](items.length);
        for (uint256 i = 0; i < items.length; ++i) {
            ok[i] = _deliverOne(items[i]);
        }
    }

    function _deliverOne(Delivery calldata item) private returns (bool) {
        bytes calldata message = item.message;
        (bytes32 id, uint32 origin) = _checkMessage(message);
        if (delivered[id]) return false;
        _verifySignatures(attestationDigest(origin, id, item.originBlockHash), item.signatures);

        bytes32 recipientWord = bytes32(message[45:77]);
        if (uint256(recipientWord) >> 160 != 0) {
            return _failed(id, abi.encodeWithSelector(InvalidRecipient.selector, recipientWord));
        }
        address recipient = address(uint160(uint256(recipientWord)));
        if (recipient.code.length == 0) {
            return _failed(id, abi.encodeWithSelector(RecipientNotContract.selector, recipient));
        }

        bytes memory callData = abi.encodeCall(
            IMessageRecipient.handle,
            (origin, bytes32(message[9:41]), message[HEADER_LENGTH:])
        );
        uint256 gasLimit = item.gasLimit;
        delivered[id] = true;
        // EIP-150 forwards at most 63/64 of what is left: make sure the recipient really gets
        // gasLimit, so that a caller cannot make a message fail by sending too little gas.
        uint256 needed = gasLimit + gasLimit / 63 + CALL_GAS_RESERVE;
        if (gasleft() < needed) revert InsufficientGasForRecipient(id, gasLimit, gasleft());
        bool success;
        uint256 reasonLength;
        assembly ("memory-safe") {
            success := call(gasLimit, recipient, 0, add(callData, 0x20), mload(callData), 0, 0)
            reasonLength := returndatasize()
        }
        if (success) {
            emit Delivered(id);
            return true;
        }
        delivered[id] = false;
        if (reasonLength > MAX_REASON_LENGTH) reasonLength = MAX_REASON_LENGTH;
        bytes memory reason = new bytes(reasonLength);
        assembly ("memory-safe") {
            returndatacopy(add(reason, 0x20), 0, reasonLength)
        }
        emit DeliveryFailed(id, reason);
        return false;
    }

    function _failed(bytes32 id, bytes memory reason) private returns (bool) {
        emit DeliveryFailed(id, reason);
        return false;
    }

    /// @dev Checks length, version and destination; returns the id and the origin domain.
    function _checkMessage(bytes calldata message) private view returns (bytes32 id, uint32 origin) {
        if (message.length < HEADER_LENGTH) revert MessageTooShort(message.length);
        uint8 version = uint8(message[0]);
        if (version != VERSION) revert UnsupportedVersion(version);
        uint32 destination = uint32(bytes4(message[41:45]));
        if (destination != localDomain) revert WrongDestination(destination, localDomain);
        origin = uint32(bytes4(message[5:9]));
        id = keccak256(message);
    }

    function _recipientAddress(bytes32 recipientWord) private pure returns (address) {
        if (uint256(recipientWord) >> 160 != 0) revert InvalidRecipient(recipientWord);
        return address(uint160(uint256(recipientWord)));
    }

    /// @dev Every signature must be valid and from an attester, signers strictly ascending (which
    ///      makes them distinct), and there must be at least `threshold` of them.
    function _verifySignatures(bytes32 digest, bytes[] calldata signatures) private view {
        uint256 count = signatures.length;
        uint256 required = threshold;
        if (count < required) revert InsufficientSignatures(count, required);
        bytes32 signed = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", digest));
        address previous = address(0);
        for (uint256 i = 0; i < count; ++i) {
            bytes calldata sig = signatures[i];
            if (sig.length != SIGNATURE_LENGTH) revert InvalidSignatureLength(i, sig.length);
            bytes32 r = bytes32(sig[0:32]);
            bytes32 s = bytes32(sig[32:64]);
            uint8 v = uint8(sig[64]);
            if (v != 27 && v != 28) revert InvalidSignatureV(i, v);
            if (uint256(s) > HALF_CURVE_ORDER) revert HighS(i);
            address signer = ecrecover(signed, v, r, s);
            if (signer == address(0)) revert InvalidSignature(i);
            if (!isAttester[signer]) revert UnknownAttester(i, signer);
            if (signer <= previous) revert SignersNotAscending(i, signer);
            previous = signer;
        }
    }
}
