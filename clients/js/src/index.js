// @imgate/client: the JavaScript SDK of the imgate login gateway (contract §13). No dependencies.
export { ImgateClient, LoginStatus, NetState, PLATFORMS, EVENTS, isValidUserID, isValidInstanceId } from "./client.js";
export { ErrorCode, ImgateError } from "./errors.js";
export { encodeClient, decodeServer, DecodeError, BincodeError } from "./codec.js";
