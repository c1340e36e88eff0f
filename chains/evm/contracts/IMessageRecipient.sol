// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @notice What a contract implements to receive messages from a Gateway.
/// @dev `handle` is called by the destination Gateway only after the committee signatures over the
///      message were checked. A recipient that trusts only one gateway must check `msg.sender`.
interface IMessageRecipient {
    /// @param origin domain id of the chain the message was sent from (a domain id, not a chain id)
    /// @param sender the sending contract or account on the origin chain, left-padded to 32 bytes
    /// @param body the application payload, exactly as passed to `Gateway.send` on the origin chain
    function handle(uint32 origin, bytes32 sender, bytes calldata body) external;
}
