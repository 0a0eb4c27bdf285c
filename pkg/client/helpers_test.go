package client

import (
	"errors"

	"github.com/keyholder/keyholder/pkg/api"
)

func asError(err error, target **Error) bool { return errors.As(err, target) }

func enrollReq(code string, id *Identity) api.EnrollRequest {
	return api.EnrollRequest{Code: code, PublicKey: string(id.Key.Public().Armor())}
}
